"""``shapecli lint``: check every spec under some paths, as a CI step does.

Each spec is checked exactly as ``inspect`` checks it — loaded, built, dry-run with its
own ``input:`` — and one that declares no input is built and checked statically, with a
``dry-run-skipped`` warning. Every file is checked even when others fail: whatever goes
wrong while checking one — a bug in shapecli included — is that file's problem. torch is
imported once, on the first spec that gets past the loader, and reused for the rest;
a folder of broken YAML never imports it at all.

Files are independent, so once torch is loaded the rest are shared out among worker
processes forked from this one (``jobs``; the command line's default is one per CPU): each
starts with torch already imported, and the results come back in file order, exactly
as one process would have found them. Forking is what makes workers cheap, so where
it is not the safe default (anything but Linux) the files are checked in this process.

What a path names is every entry that is not a folder — a FIFO, a link to ``/dev/zero``
or a symlink loop included, each reported as a ``file-error`` when it cannot be read —
and only what really lies inside the folder it was named in: a file reached through a
symlink that leads out of it is refused unread, so no message can echo what it holds.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shapecli import api
from shapecli.errors import (
    ExitCode,
    Problem,
    ShapecliError,
    Source,
    fail,
    internal_problem,
    worst_exit_code,
)
from shapecli.inputs import InputError, InputSpec, merge_inputs, symbols_in
from shapecli.report import Totals

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class FileResult:
    """The problems found in one file (errors and warnings)."""

    file: str
    problems: tuple[Problem, ...] = ()
    ran: bool = False  # whether the dry run happened
    found: bool = True  # False for a path that names no file
    totals: Totals | None = None  # what the dry run counted, when it ran

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")


@dataclass(frozen=True)
class LintResult:
    files: tuple[FileResult, ...]

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self.files for p in f.problems]

    @property
    def checked(self) -> int:
        return sum(1 for f in self.files if f.found)

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.files)

    @property
    def warnings(self) -> int:
        return sum(f.warnings for f in self.files)

    @property
    def exit_code(self) -> ExitCode:
        return worst_exit_code(self.problems)


def collect(paths: Sequence[str]) -> list[Path | FileResult]:
    """The spec files under ``paths`` (files, folders searched recursively, globs), in
    the order they were named (a folder's in a stable one), with a ``file-error`` result
    in place of each path that names nothing and of each file that lies outside the
    folder it was named in. A file named twice, however it is spelled (``a.yaml``,
    ``./x/../a.yaml``, an absolute path), is checked once, under the first spelling."""
    named: list[Path | FileResult] = []
    seen: set[str] = set()
    for text in paths:
        files, root, why = _named_by(text)
        if not files:
            named.append(_missing(text, why))
        for file in files:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                named.append(_outside(file, root) or file)
    return named


def _named_by(text: str) -> tuple[list[Path], Path, str]:
    """The spec files one path names, the folder they must lie in, and why there are
    none when there are none. A symlink loop or a broken link is named (reading it
    says what it is); a folder is never followed through a symlink."""
    path = Path(text)
    if path.is_dir():
        return sorted(_walk(path)), path, "no spec files (*.yaml, *.yml) under this folder"
    if path.exists() or path.is_symlink():
        return [path], path.parent, ""
    if _is_pattern(text):
        # glob.glob, not Path.glob: the pattern is the user's, absolute or relative
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))  # noqa: PTH207
        files = [m for m in matches if not m.is_dir() and m.suffix in SUFFIXES]
        return files, _pattern_root(path), "no spec file matches this pattern"
    return [], path, "no such file or directory"


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _pattern_root(pattern: Path) -> Path:
    """The folder a glob searches: its leading parts without a wildcard."""
    fixed = itertools.takewhile(lambda part: not _is_pattern(part), pattern.parts[:-1])
    return Path(*fixed)


def _walk(folder: Path) -> Iterable[Path]:
    """Every spec file under ``folder`` but in hidden folders: everything with a spec's
    suffix that is not a folder, so what cannot be read is reported, not skipped."""
    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.suffix in SUFFIXES and not hidden and not path.is_dir():
            yield path


def _outside(file: Path, root: Path) -> FileResult | None:
    """A ``file-error`` for a file that lies outside ``root`` once symlinks are
    followed: a symlink in a checkout must not make lint read (and quote, in its
    messages) a file the checkout does not hold."""
    if Path(os.path.realpath(file)).is_relative_to(os.path.realpath(root)):
        return None
    problem = Problem(
        "file-error",
        f"is a symlink to a file outside {str(root) if root.parts else 'its folder'}; "
        "lint reads only files inside the folder they are named in, so it was not read",
        Source(str(file), 0, 0),
    )
    return FileResult(str(file), (problem,))


def _missing(path: str, why: str) -> FileResult:
    return FileResult(path, (Problem("file-error", why, Source(path, 0, 0)),), found=False)


def guarded(
    check: Callable[[Path], FileResult], path: Path, show_traceback: bool = False
) -> FileResult:
    """``check(path)``, with whatever it raises as the file's own problems: a bug in
    shapecli (an ``internal`` problem, exit 3 once every file is checked) stops the
    check of this file only. ``show_traceback`` prints the bug's traceback to stderr."""
    where = Source(str(path), 0, 0)
    try:
        return check(path)
    except ShapecliError as e:
        return FileResult(str(path), tuple(p.located(where) for p in e.problems))
    except Exception as e:
        if show_traceback:
            traceback.print_exc()
        return FileResult(str(path), (internal_problem(e).located(where),))


def check_file(
    path: Path,
    inputs: tuple[InputSpec, ...] = (),
    allow_import: Iterable[str] = (),
    flops: bool = False,
) -> FileResult:
    """Check one spec; every problem is located in ``path``; ``flops`` counts them. A
    spec that cannot be read is raised (:func:`guarded` makes it the file's result)."""
    where = Source(str(path), 0, 0)
    spec = api.load(path)
    symbols = _symbols(spec.inputs, inputs) if flops else []
    report = api.inspect(
        spec, inputs or None, allow_import=allow_import, static_ok=True, flops=flops and not symbols
    )
    found = [*report.errors, *report.warnings]
    if symbols:  # FLOPs need numbers: the shapes are checked all the same
        found.append(_flops_skipped(symbols, spec.input_source or where))
    problems = tuple(p.located(where) for p in found)
    return FileResult(
        str(path), problems, ran=report.ran, totals=report.totals if report.ran else None
    )


def _flops_skipped(symbols: list[str], source: Source) -> Problem:
    return Problem(
        "flops-skipped",
        f"FLOPs need numbers, and the input has symbolic sizes ({', '.join(symbols)}): the "
        "shapes were checked, the FLOPs not counted",
        source,
        severity="warning",
        hint="give the sizes with --input (e.g. 2x20) to count them",
    )


def _symbols(declared: tuple[InputSpec, ...], given: tuple[InputSpec, ...]) -> list[str]:
    """The symbolic sizes of the inputs a file is checked with (none when they do not
    merge: the check itself says why)."""
    try:
        merged = merge_inputs(declared, given)
    except InputError:
        return []
    return list(symbols_in(merged))


def lint(
    paths: Sequence[str],
    inputs: tuple[InputSpec, ...] = (),
    allow_import: Iterable[str] = (),
    flops: bool = False,
    jobs: int = 1,
    show_traceback: bool = False,
) -> LintResult:
    """Check every spec under ``paths`` (counting FLOPs with ``flops``), in up to
    ``jobs`` processes: 1, this one only (forking is the command line's choice, which
    owns its process; :func:`default_jobs` is what it chooses). ``show_traceback``
    prints the traceback of a bug met while checking a file."""
    named = collect(paths)
    files = [item for item in named if isinstance(item, Path)]
    one = functools.partial(
        check_file, inputs=inputs, allow_import=tuple(allow_import), flops=flops
    )
    check = functools.partial(guarded, one, show_traceback=show_traceback)
    results: list[FileResult] = []
    with contextlib.ExitStack() as lean:
        pending = iter(files)
        for file in pending:  # in this process, until one of them has loaded torch
            results.append(check(file))
            if "torch" in sys.modules:
                from shapecli import torch_compat
                from shapecli.speedups import lean_meta

                torch_compat.require_supported()  # said once for all, not once per file
                lean.enter_context(lean_meta())  # one lean block for all the files left
                break
        results.extend(_check_all(check, list(pending), jobs))
    checked = iter(results)
    return LintResult(tuple(next(checked) if isinstance(i, Path) else i for i in named))


def default_jobs() -> int:
    """The CPUs this process may use: those it may run on, or fewer where a CPU quota in
    ``/sys/fs/cgroup/cpu.max`` says so (cgroup v2 as a container sees it: a container
    often sees every CPU of its host). Quotas elsewhere (cgroup v1, an enclosing
    group's) are not read."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return min(cpus, _quota_cpus() or cpus)


#: cgroup v2's CPU limit of this process's group: "QUOTA PERIOD" (µs), or "max PERIOD".
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota_cpus() -> int | None:
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        return max(1, -(-int(quota) // int(period)))  # 1.5 CPUs' worth: 2 workers
    except (OSError, ValueError):  # no cgroup v2, or no limit ("max")
        return None


def _check_all(
    check: Callable[[Path], FileResult], files: list[Path], jobs: int
) -> list[FileResult]:
    """``check`` of every file, in order: in forked workers when that pays (more than
    one job and at least two files each), else here."""
    workers = min(jobs, len(files) // 2)
    if workers < 2 or sys.platform != "linux":
        return [check(file) for file in files]
    import multiprocessing  # here: ~30 ms that one file, or one process, never needs
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork")
    chunk = max(1, len(files) // (workers * 8))  # small enough to even out the load
    # The check reaches the workers as the initializer's argument: with fork it is
    # inherited, not pickled, so only paths and results cross between processes.
    start = (os.getpid(), check)
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=start
        ) as pool:
            return list(pool.map(_work, files, chunksize=chunk))
    except BrokenProcessPool:  # a worker was killed (out of memory?): say so, never hang
        raise fail(
            "internal",
            "a worker process ended abruptly while checking these files (killed, or out "
            "of memory?); run again with --jobs 1 to see which file it was",
        ) from None


#: In a worker: the check it runs on each path (set by :func:`_start_worker`).
_CHECK: list[Callable[[Path], FileResult]] = []


def _start_worker(parent: int, check: Callable[[Path], FileResult]) -> None:
    """Ready a forked worker.

    - It ends when the process that forked it does, however that ends (``kill``, a CI
      runner's SIGTERM): else it would wait for work forever, holding the output pipe
      open, and whoever reads lint's output would hang with it.
    - torch runs one thread in it (one worker per CPU already): a thread pool the
      parent started before the fork does not exist here, and using it would hang.
    """
    import ctypes
    import signal

    import torch

    _CHECK.append(check)
    torch.set_num_threads(1)
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG, linux/prctl.h
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the rest still holds
        ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the line above: nobody will signal
        os._exit(1)


def _work(path: Path) -> FileResult:
    """The check of one file in a worker (which makes whatever goes wrong the file's
    problem, as in one process)."""
    return _CHECK[-1](path)
