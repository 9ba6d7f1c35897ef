"""Measuring and reporting shared by the benchmarks in this folder.

Every measurement is a whole process, because a whole process is what a user waits
for: interpreter start, imports, the work and teardown. Commands run round-robin (so
drift in a shared machine's speed hits all of them alike) and the medians are
compared, as ratios to ``python -c "import torch"``: ratios hold across machines far
better than seconds do.

Each run's wall time, CPU time and peak resident set size come from ``wait4`` on the
child, so nothing sits between the benchmark and the command (``/usr/bin/time`` would
be one more process). Linux charges a child with the peak RSS of the process it was
forked from as well, so this module must stay small: it never imports torch.

Before the first round, shapecli's bytecode is compiled where the commands will import
it from, as ``pip install`` does for an installed package: a work tree (an editable
install) is otherwise compiled afresh in every run wherever ``PYTHONDONTWRITEBYTECODE``
is set, a cost no installed shapecli has.
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BASELINE_NAME = "python -c 'import torch'"
BASELINE: tuple[str, ...] = (PYTHON, "-c", "import torch")
SHAPECLI: tuple[str, ...] = (PYTHON, "-m", "shapecli")


@dataclass(frozen=True)
class Sample:
    """One run of a command."""

    wall: float
    """Seconds from spawning the process to its exit (to the kill, on a timeout)."""
    cpu: float
    """User plus system seconds of the process and the children it waited for."""
    peak_rss: int
    """Peak resident set size in bytes."""
    exit_code: int | None
    """``None`` when the process was killed at the timeout."""
    stdout: str
    stderr: str


@dataclass
class Result:
    """Every run of one command; a command that timed out or failed is not run again."""

    samples: list[Sample] = field(default_factory=list)
    timeout: float | None = None

    @property
    def problem(self) -> str | None:
        """Why the command stopped being measured, or ``None`` if every run passed."""
        for sample in self.samples:
            if sample.exit_code is None:
                return f"timeout (>{self.timeout:g} s)"
            if sample.exit_code != 0:
                return f"failed (exit {sample.exit_code})"
        return None

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.samples)

    @property
    def failed(self) -> bool:
        """A run exited non-zero: a broken command (a timeout is a result, not this)."""
        return any(s.exit_code not in (0, None) for s in self.samples)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return int(statistics.median(s.peak_rss for s in self.samples))

    @property
    def stdout(self) -> str:
        """What the first run printed (every run of a deterministic command prints it)."""
        return self.samples[0].stdout if self.samples else ""

    def stderr_tail(self, lines: int = 5) -> str:
        """The end of the last run's stderr: enough to see why it failed."""
        if not self.samples:
            return ""
        return "\n".join(self.samples[-1].stderr.strip().splitlines()[-lines:])

    @property
    def reason(self) -> str:
        """The last unindented line of stderr: a traceback's exception, or shapecli's
        ``error[...]`` line rather than the hint indented under it."""
        text = self.samples[-1].stderr if self.samples else ""
        lines = [line for line in text.splitlines() if line.strip() and not line[0].isspace()]
        return lines[-1] if lines else "(nothing on stderr)"


def run(command: Sequence[str], *, timeout: float | None = None, cwd: Path = ROOT) -> Sample:
    """Run ``command`` once and measure it; kill it (and its process group) at ``timeout``.

    Output goes to temporary files rather than pipes, so a command that prints a lot
    never blocks on a full pipe and nothing has to read it while it runs.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        try:
            exited = _exits_within(process.pid, timeout)
        except BaseException:  # Ctrl-C does not reach a child in its own session
            os.killpg(process.pid, signal.SIGKILL)
            os.wait4(process.pid, 0)
            raise
        if not exited:  # not reaped yet, so the id cannot have been reused
            os.killpg(process.pid, signal.SIGKILL)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Sample(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_rss=usage.ru_maxrss * 1024,  # KiB on Linux
            exit_code=process.returncode if exited else None,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _exits_within(pid: int, timeout: float | None) -> bool:
    """Whether process ``pid`` ends within ``timeout`` seconds (``None``: wait for it).

    A pidfd becomes readable when the process exits; unlike a timer thread racing
    ``wait``, it cannot fire after the process has been reaped.
    """
    descriptor = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([descriptor], [], [], timeout)
    finally:
        os.close(descriptor)
    return bool(ready)


def round_robin(
    commands: Mapping[str, Sequence[str]],
    runs: int,
    *,
    timeout: float | None = None,
    progress: bool = False,
) -> dict[str, Result]:
    """Run every command ``runs`` times, one of each per round, in order.

    A command that times out or fails is skipped in later rounds: its figure would be
    "timeout" or "failed" anyway, and a second timeout only costs minutes. With
    ``progress``, one line per run goes to stderr, so a long benchmark shows it is alive.
    """
    results = {name: Result(timeout=timeout) for name in commands}
    compile_shapecli()
    for round_number in range(1, runs + 1):
        for name, command in commands.items():
            result = results[name]
            if result.problem is not None:
                continue
            sample = run(command, timeout=timeout)
            result.samples.append(sample)
            if progress:
                print(
                    f"  [{round_number}/{runs}] {name}: {describe(result, sample)}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


COMPILE = (
    "import compileall, pathlib, shapecli; "
    "compileall.compile_dir(pathlib.Path(shapecli.__file__).parent, quiet=1)"
)


def compile_shapecli() -> None:
    """Write the bytecode of the shapecli the commands import (see the module docstring)."""
    subprocess.run([sys.executable, "-c", COMPILE], cwd=ROOT, check=True)


def describe(result: Result, sample: Sample) -> str:
    """A progress line's verdict on one run."""
    problem = result.problem
    if problem is not None:
        return problem
    return f"{sample.wall:.2f} s, {mib(sample.peak_rss)}"


def exit_status(results: Mapping[str, Result]) -> int:
    """1 if any command failed, so a caller notices; timeouts are measurements, not
    failures."""
    return int(any(result.failed for result in results.values()))


def failure_notes(results: Mapping[str, Result]) -> list[str]:
    """One Markdown paragraph per distinct failure: which commands, and why."""
    by_reason: dict[str, list[str]] = {}
    for name, result in results.items():
        if result.failed:
            by_reason.setdefault(result.reason, []).append(name.strip())
    return [f"Failed: {', '.join(names)}: `{reason}`" for reason, names in by_reason.items()]


def require_ok(results: Mapping[str, Result]) -> None:
    """Stop the benchmark, naming the command, when any run failed or timed out."""
    for name, result in results.items():
        if not result.ok:
            sys.exit(f"{name}: {result.problem}\n{result.stderr_tail()}")


# Formatting


def secs(value: float) -> str:
    return f"{value:.2f} s"


def times(value: float) -> str:
    return f"{value:.2f}×"


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A Markdown table whose columns are padded, so it also reads well in a terminal.

    ``right`` lists the columns (numbers) to align right.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    widths = [max(width, 3) for width in widths]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ":" if i in right else "-" * (width + 2)
        for i, width in enumerate(widths)
    )
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def baseline_line(result: Result, runs: int) -> str:
    """The sentence that says what the ratios are ratios to."""
    return (
        f"Ratios are to `{BASELINE_NAME}`: {secs(result.wall)} wall, {secs(result.cpu)} CPU, "
        f"{mib(result.peak_rss)} peak RSS (median of {runs} run{'s' * (runs != 1)}, "
        "round-robin with the rest)."
    )


def invocation() -> str:
    """The command line of this benchmark, to rerun it (less where it was written)."""
    args: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--write="):
            skip = False
        elif arg == "--write":
            skip = True
        else:
            args.append(arg)
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *args])


def spec_copies(folder: Path, names: Sequence[str], count: int) -> list[Path]:
    """``count`` copies of the ``configs/`` files ``names``, in turn, written to ``folder``
    (a folder of many small specs for ``lint``)."""
    copies = []
    for i in range(count):
        source = ROOT / "configs" / names[i % len(names)]
        copies.append(folder / f"{i:03d}-{source.name}")
        shutil.copy(source, copies[-1])
    return copies


def parser(doc: str | None, runs: int, timeout: float | None = None) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--runs``, ``--write`` (and ``--timeout``
    where a run may hang), described by the first line of the script's docstring."""
    made = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    made.add_argument("--runs", type=positive, default=runs)
    if timeout is not None:
        made.add_argument("--timeout", type=float, default=timeout, help="seconds per run")
    made.add_argument("--write", type=Path, metavar="FILE", help="write a Markdown section")
    return made


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--runs 0`` has no median)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def write_section(path: Path | None, title: str, body: str) -> None:
    """Write ``## title``, the command line that made it and ``body`` to ``path``
    (nothing when ``path`` is ``None``)."""
    if path is not None:
        text = f"## {title}\n\n`{invocation()}`\n\n{body.strip()}\n"
        path.write_text(text, encoding="utf-8")
