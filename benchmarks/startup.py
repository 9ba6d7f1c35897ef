"""Wall-clock cost of shapecli runs, as ratios to ``python -c "import torch"``.

    python benchmarks/startup.py [--runs N] [SPEC ...]

Each command runs N times in a fresh process; the median is reported. Ratios, not
seconds, are the claim: they hold across machines far better than absolute times.

Besides the CLI itself, two variants isolate what ``shapecli.speedups`` buys:
the same dry run through the API without it ("plain"), and with it but with a normal
interpreter exit ("no fast exit").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PLAIN = "import sys; from shapecli import api; r = api.inspect(sys.argv[1]); assert r.ok"
PATCHED = (
    "import sys; from shapecli import api, speedups; speedups.skip_dynamo_import(); "
    "r = api.inspect(sys.argv[1]); assert r.ok"
)


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("specs", nargs="*", default=["configs/mlp.yaml"])
    args = parser.parse_args()
    python = sys.executable
    cli = [python, "-m", "shapecli"]

    nothing = median_seconds([python, "-c", "pass"], args.runs)
    torch_import = median_seconds([python, "-c", "import torch"], args.runs)
    print(f"python -c pass           {nothing:6.2f} s")
    print(f"python -c 'import torch' {torch_import:6.2f} s  (= 1.00×, the baseline)")
    help_time = median_seconds([*cli, "--help"], args.runs)
    print(f"shapecli --help          {help_time:6.2f} s  = {help_time / torch_import:.2f}× torch")
    for spec in args.specs:
        print(f"\n{spec}")
        rows = {
            "shapecli inspect": [*cli, "inspect", spec],
            "  plain API dry run": [python, "-c", PLAIN, spec],
            "  speedups, no fast exit": [python, "-c", PATCHED, spec],
        }
        for label, command in rows.items():
            seconds = median_seconds(command, args.runs)
            print(f"{label:26s} {seconds:6.2f} s  = {seconds / torch_import:.2f}× torch")


if __name__ == "__main__":
    main()
