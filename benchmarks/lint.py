"""``shapecli lint`` over a folder of 100 small specs, as a ratio to linting one.

    python benchmarks/lint.py [--runs N] [--files N]

torch is imported once per process, so checking many files should cost little more
than checking one; the claim is "well under 2×".
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["mlp.yaml", "partial.yaml", "lenet5.yaml", "llama-tiny.yaml"]


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.files):
            source = ROOT / "configs" / SPECS[i % len(SPECS)]
            shutil.copy(source, folder / f"{i:03d}-{source.name}")
        one = sorted(folder.iterdir())[0]
        cli = [sys.executable, "-m", "shapecli", "lint"]
        single, many = [], []
        for _ in range(args.runs):  # round-robin, so drift hits both alike
            single.append(seconds([*cli, str(one)]))
            many.append(seconds([*cli, str(folder)]))
    a, b = statistics.median(single), statistics.median(many)
    print(f"lint 1 file     {a:6.2f} s")
    print(f"lint {args.files} files {b:6.2f} s  = {b / a:.2f}× one file")


if __name__ == "__main__":
    main()
