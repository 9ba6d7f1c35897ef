"""``shapecli lint`` over a folder of many small specs, as a ratio to linting one.

    python benchmarks/lint.py [--runs N] [--files N] [--specs NAME ...] [--write FILE]

torch is imported once per process, so checking many files costs what each dry run
costs, and not another import: 1,000 MLP-sized specs should cost under 3× one. lint
shares the files out among one worker process per available CPU (forked, so torch
comes already imported); the same folder with ``--jobs 1`` shows what one process does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import harness

SPECS = ["mlp.yaml", "partial.yaml", "lenet5.yaml", "llama-tiny.yaml"]


def main() -> None:
    parser = harness.parser(__doc__, runs=5)
    parser.add_argument("--files", type=harness.positive, default=100)
    parser.add_argument("--specs", nargs="+", default=SPECS, metavar="NAME", help="configs/ files")
    args = parser.parse_args()
    specs = args.specs
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one = harness.spec_copies(folder, specs, args.files)[0]
        cli = [sys.executable, "-m", "shapecli", "lint"]
        many_files = f"{args.files} files"
        commands = {
            "1 file": [*cli, str(one)],
            many_files: [*cli, str(folder)],
            f"{many_files}, --jobs 1": [*cli, str(folder), "--jobs", "1"],
        }
        results = harness.round_robin(commands, args.runs)  # drift hits all alike
    single, many = results["1 file"], results[many_files]
    if single.ok and many.ok:
        print(f"lint 1 file     {single.wall:6.2f} s")
        print(
            f"lint {args.files} files {many.wall:6.2f} s  = {many.wall / single.wall:.2f}× one file"
        )
    rows = []
    for label, result in results.items():
        if not result.ok:
            print(f"lint {label}: {result.problem}: {result.reason}")
            rows.append([f"`shapecli lint` {label}", result.problem or "not run", "", "", ""])
            continue
        rows.append(
            [
                f"`shapecli lint` {label}",
                harness.secs(result.wall),
                harness.times(result.wall / single.wall) if single.ok else "",
                harness.secs(result.cpu),
                harness.mib(result.peak_rss),
            ]
        )
    table = harness.table(
        [f"run (median of {args.runs}, round-robin)", "wall", "× one file", "CPU", "peak RSS"],
        rows,
        right=(1, 2, 3, 4),
    )
    notes = "".join(f"\n\n{note}" for note in harness.failure_notes(results))
    harness.write_section(
        args.write,
        f"Linting many specs: {', '.join(specs)}",
        f"{table}\n\n"
        f"The files are copies of {', '.join(specs)} in turn, each with its own `input:`. "
        f"lint used {cpus()} worker processes (one per available CPU), except with `--jobs 1`."
        + notes,
    )
    sys.exit(harness.exit_status(results))


def cpus() -> int:
    """lint's default number of workers here, as the shapecli being measured counts them."""
    code = "from shapecli.lint import default_jobs; print(default_jobs())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)


if __name__ == "__main__":
    main()
