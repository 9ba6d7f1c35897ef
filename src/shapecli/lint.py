"""``shapecli lint``: check every spec under some paths, as a CI step does.

Each spec is checked exactly as ``inspect`` checks it — loaded, built, dry-run with its
own ``input:`` — and one that declares no input is built and checked statically, with a
``dry-run-skipped`` warning. Every file is checked even when others fail. torch is
imported once, on the first spec that gets past the loader, and reused for the rest;
a folder of broken YAML never imports it at all.
"""

from __future__ import annotations

import contextlib
import glob
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shapecli import api
from shapecli.errors import ExitCode, Problem, ShapecliError, Source, worst_exit_code
from shapecli.inputs import InputSpec
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


def collect(paths: Sequence[str]) -> tuple[list[Path], list[FileResult]]:
    """The spec files under ``paths`` (files, folders searched recursively, globs), in
    a stable order, and a ``file-error`` result for each path that names nothing."""
    found: dict[Path, None] = {}
    missing: list[FileResult] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files = sorted(_walk(path))
            for file in files:
                found.setdefault(file)
            if not files:
                missing.append(_missing(text, "no spec files (*.yaml, *.yml) under this folder"))
        elif path.exists():
            found.setdefault(path)
        elif any(c in text for c in "*?["):
            # glob.glob, not Path.glob: the pattern is the user's, absolute or relative
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))  # noqa: PTH207
            files = [m for m in matches if m.is_file() and m.suffix in SUFFIXES]
            for file in files:
                found.setdefault(file)
            if not files:
                missing.append(_missing(text, "no spec file matches this pattern"))
        else:
            missing.append(_missing(text, "no such file or directory"))
    return list(found), missing


def _walk(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and path.suffix in SUFFIXES and not hidden:
            yield path


def _missing(path: str, why: str) -> FileResult:
    return FileResult(path, (Problem("file-error", why, Source(path, 0, 0)),), found=False)


def check_file(
    path: Path,
    inputs: tuple[InputSpec, ...] = (),
    allow_import: Iterable[str] = (),
    flops: bool = False,
) -> FileResult:
    """Check one spec; every problem is located in ``path``; ``flops`` counts them."""
    where = Source(str(path), 0, 0)
    try:
        spec = api.load(path)
    except ShapecliError as e:
        return FileResult(str(path), tuple(p.located(where) for p in e.problems))
    report = api.inspect(
        spec, inputs or None, allow_import=allow_import, static_ok=True, flops=flops
    )
    problems = tuple(p.located(where) for p in (*report.errors, *report.warnings))
    return FileResult(
        str(path), problems, ran=report.ran, totals=report.totals if report.ran else None
    )


def lint(
    paths: Sequence[str],
    inputs: tuple[InputSpec, ...] = (),
    allow_import: Iterable[str] = (),
    flops: bool = False,
) -> LintResult:
    """Check every spec under ``paths`` (counting FLOPs with ``flops``)."""
    files, missing = collect(paths)
    allowed = tuple(allow_import)
    results = []
    opened = False
    with contextlib.ExitStack() as lean:
        for file in files:
            results.append(check_file(file, inputs, allowed, flops))
            if not opened and "torch" in sys.modules:
                # torch is loaded now: one lean block for all the files after this one
                from shapecli.speedups import lean_meta

                lean.enter_context(lean_meta())
                opened = True
    return LintResult((*missing, *results))
