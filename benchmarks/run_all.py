"""Run every benchmark in this folder and write their results to ``RESULTS.md``.

    python benchmarks/run_all.py [--runs N] [--output FILE] [--source REV]

The benchmarks run one after another (never two at once: they would slow each other),
each in its own process with ``--write``, and their Markdown sections are joined under
a header that says what was measured on: CPU, cores, memory, Python and package
versions, the commit and whether the work tree had changes, and the load average
before and after — on a shared machine the load says how far to trust the figures.
A benchmark that fails gets a section saying so; the others still run.

``--source HEAD`` measures the shapecli of a commit instead of the work tree: its
``src/`` is extracted (``git archive``) into a temporary folder put first on
``PYTHONPATH``. Someone else editing ``src/`` meanwhile then cannot break or skew a
run half-way, and the figures belong to one known commit.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import io
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    script: str
    args: tuple[str, ...] = ()


BENCHMARKS = (
    # docs/performance.md's table: a small spec, GPT-2 and a 70B decoder.
    Benchmark("startup.py", ("configs/mlp.yaml", "configs/gpt2.yaml", "configs/llama2-70b.yaml")),
    Benchmark("lint.py", ("--files", "1000", "--specs", "mlp.yaml")),
    Benchmark("lint.py", ("--files", "1000")),
    Benchmark("compare.py"),
    Benchmark("scaling.py"),
    # Symbolic sizes against concrete inspection of the same specs, paired.
    Benchmark("symbolic.py"),
)


@dataclass(frozen=True)
class Outcome:
    benchmark: Benchmark
    command: list[str]
    exit_code: int
    seconds: float
    section: str


def run(benchmark: Benchmark, runs: int | None, folder: Path, env: dict[str, str]) -> Outcome:
    """Run one benchmark, its output shown as it goes; return its Markdown section."""
    section_file = folder / f"{benchmark.script}-{abs(hash(benchmark.args))}.md"
    command = [sys.executable, str(HERE / benchmark.script), *benchmark.args]
    if runs is not None:
        command += ["--runs", str(runs)]
    command += ["--write", str(section_file)]
    print(f"\n=== {benchmark.script} ===", flush=True)
    start = time.perf_counter()
    exit_code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    seconds = time.perf_counter() - start
    if section_file.exists():  # written even when some command failed: it says which
        section = section_file.read_text(encoding="utf-8")
    else:
        section = (
            f"## {benchmark.script}: failed\n\n"
            f"`{shlex.join(display(command))}` exited with code {exit_code}; "
            "its output above the failure is in the terminal that ran `run_all.py`.\n"
        )
    return Outcome(benchmark, command, exit_code, seconds, section)


def display(command: list[str]) -> list[str]:
    """A command as a reader would type it: ``python benchmarks/x.py …``, no temp files."""
    shown = ["python", str(Path(command[1]).relative_to(ROOT))]
    rest = command[2:]
    if "--write" in rest:
        rest = rest[: rest.index("--write")]
    return shown + rest


def version(package: str) -> str:
    """An installed distribution's version, read from its metadata (nothing is imported)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def memory() -> str:
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def git(*args: str) -> str:
    """A read-only git query; ``GIT_OPTIONAL_LOCKS=0`` keeps even ``status`` from
    refreshing the index, since someone else may be working in this tree."""
    result = subprocess.run(
        ["git", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    return result.stdout.rstrip() if result.returncode == 0 else ""  # keep `status`'s columns


def extract_source(rev: str, folder: Path) -> tuple[str, dict[str, str]]:
    """Put ``src/`` as committed at ``rev`` in ``folder``; return the commit and an
    environment whose ``python`` imports shapecli from there."""
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not commit:
        sys.exit(f"--source {rev}: not a commit")
    archive = subprocess.run(
        ["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    paths = [str(folder / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    where = subprocess.run(
        [sys.executable, "-c", "import shapecli; print(shapecli.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not Path(where.strip()).is_relative_to(folder):
        sys.exit(f"--source: shapecli was imported from {where.strip()}, not from {folder}")
    return commit, env


LOG = ("log", "-1", "--format=%h (%cd) %s", "--date=format:%Y-%m-%d %H:%M")
"""A commit in one line: hash, date and subject."""


def code_state(source: str | None) -> str:
    """Which code was measured: the commit, and what in the work tree differs from it."""
    if source is not None:
        return f"`src/` of {git(*LOG, source)}, extracted with `git archive` (`--source`)"
    commit = git(*LOG)
    if not commit:
        return "not a git checkout"
    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if not line[3:].startswith("benchmarks/")
    ]
    if not changed:
        return f"{commit}, no uncommitted changes outside benchmarks/"
    return f"{commit}, with uncommitted changes to {', '.join(f'`{p}`' for p in changed)}"


def load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def header(
    started: datetime.datetime, load_before: str, outcomes: list[Outcome], source: str | None
) -> str:
    cores = os.cpu_count() or 0
    available = len(os.sched_getaffinity(0))
    facts = [
        ("Date", started.strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu_model()}, {cores} logical CPUs ({available} available)"),
        ("Memory", memory()),
        ("System", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        (
            "Packages",
            ", ".join(
                f"{name} {version(name)}" for name in ("shapecli", "torch", "torchinfo", "numpy")
            ),
        ),
        ("Code", code_state(source)),
        *(
            [("PYTHONPATH", f"`{os.environ['PYTHONPATH']}`")]
            if os.environ.get("PYTHONPATH")
            else []
        ),
        ("Load average (1/5/15 min)", f"{load_before} before, {load()} after"),
        (
            "Ran",
            "; ".join(
                f"`{shlex.join(display(o.command))}` {o.seconds:.0f} s"
                + ("" if o.exit_code == 0 else f" (exit {o.exit_code})")
                for o in outcomes
            ),
        ),
    ]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python benchmarks/run_all.py`; rerun it rather than editing this file. "
        "Every figure is a median over whole processes run round-robin; ratios to "
        "`python -c 'import torch'` travel between machines far better than seconds. The "
        "machine may have been shared while they ran: see the load average.",
        "",
        *(f"- **{name}**: {value}" for name, value in facts),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--runs", type=harness.positive, help="runs per command (default: each benchmark's own)"
    )
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--source", metavar="REV", help="measure src/ as committed at REV, not the work tree"
    )
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="shapecli-bench-") as tmp:
        folder = Path(tmp)
        commit, env = None, dict(os.environ)
        if args.source is not None:
            commit, env = extract_source(args.source, folder / "snapshot")
        outcomes = [run(benchmark, args.runs, folder, env) for benchmark in BENCHMARKS]
    sections = (o.section for o in outcomes)
    text = "\n\n".join([header(started, load_before, outcomes, commit), *sections])
    args.output.write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    if any(o.exit_code for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
