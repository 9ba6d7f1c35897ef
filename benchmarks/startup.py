"""Cost of shapecli runs, as ratios to ``python -c "import torch"``.

    python benchmarks/startup.py [--runs N] [SPEC ...]

Every command runs N times in a fresh process, round-robin (so drift in the machine's
speed hits all of them alike), and the medians are compared. Ratios, not seconds, are
the claim: they hold across machines far better than absolute times. Wall time is
what a user waits; CPU time (user + system, of the child) is steadier on a shared
machine.

Besides the CLI itself, two variants isolate what ``shapecli.speedups`` buys: the same
dry run through the API without it ("plain"), and with it but leaving through normal
interpreter teardown ("no fast exit").
"""

from __future__ import annotations

import argparse
import os
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


def measure(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command``."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("specs", nargs="*", default=["configs/mlp.yaml"])
    args = parser.parse_args()
    python = sys.executable
    cli = [python, "-m", "shapecli"]
    commands: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import torch'": [python, "-c", "import torch"],
        "shapecli --help": [*cli, "--help"],
    }
    for spec in args.specs:
        commands[f"shapecli inspect {spec}"] = [*cli, "inspect", spec]
        commands["  plain API dry run " + spec] = [python, "-c", PLAIN, spec]
        commands["  speedups, no fast exit " + spec] = [python, "-c", PATCHED, spec]

    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            samples[name].append(measure(command))

    wall = {n: statistics.median(w for w, _ in s) for n, s in samples.items()}
    cpu = {n: statistics.median(c for _, c in s) for n, s in samples.items()}
    base = "python -c 'import torch'"
    header = f"median of {args.runs} runs"
    print(f"{header:52s} {'wall':>8s} {'ratio':>7s} {'cpu':>8s} {'ratio':>7s}")
    for name in commands:
        print(
            f"{name:52s} {wall[name]:7.2f}s {wall[name] / wall[base]:6.2f}× "
            f"{cpu[name]:7.2f}s {cpu[name] / cpu[base]:6.2f}×"
        )


if __name__ == "__main__":
    main()
