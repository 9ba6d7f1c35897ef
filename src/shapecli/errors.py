"""One problem record and one exception hierarchy for everything that can go wrong.

Every failure a user can cause — a YAML syntax error, an unknown layer, a shape
mismatch, a bad ``--input`` — becomes a :class:`Problem`: a stable code, a message, a
source location and, where they help, the shapes involved, what was expected and a
hint. The same record feeds the table's error block, the JSON ``errors`` list and
``lint`` lines, so no output format has to reinvent how an error looks.

The exit code follows from the code alone (see :data:`EXIT_CODES`), so nobody picks
exit codes by hand.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Annotated, Literal

from shapecli.codec import Added, Key, NullFor, OneOf, Range

Severity = Literal["error", "warning"]


class ExitCode(IntEnum):
    """Process exit codes, as ruff, shellcheck and actionlint use them."""

    OK = 0
    PROBLEMS = 1  # something is wrong with a spec or model: what lint exists to find
    USAGE = 2  # shapecli could not do its job: bad command line, missing file, bad --input
    INTERNAL = 3  # a bug in shapecli


#: Stable error codes and the exit code each one implies.
EXIT_CODES: dict[str, ExitCode] = {
    "yaml-syntax": ExitCode.PROBLEMS,
    "spec-invalid": ExitCode.PROBLEMS,
    "unknown-layer": ExitCode.PROBLEMS,
    "bad-arguments": ExitCode.PROBLEMS,
    "shape-mismatch": ExitCode.PROBLEMS,
    "size-dependent": ExitCode.PROBLEMS,
    "import-denied": ExitCode.PROBLEMS,
    "python-model": ExitCode.PROBLEMS,
    "uninitialized": ExitCode.PROBLEMS,
    # `build`: a model too large for the memory it may use (a verdict on the model's
    # size against a budget, like a lint finding; see docs/commands.md's exit codes),
    # weights that do not fit the spec, a real forward pass that disagrees with the dry
    # run, a layer whose tensors nothing initializes
    "too-large": ExitCode.PROBLEMS,
    "weights-mismatch": ExitCode.PROBLEMS,
    "verify-mismatch": ExitCode.PROBLEMS,
    "no-initializer": ExitCode.PROBLEMS,
    "dry-run-skipped": ExitCode.OK,
    "flops-skipped": ExitCode.OK,
    "layer-warning": ExitCode.OK,
    "unused-input": ExitCode.OK,
    "training-estimate": ExitCode.OK,
    "size-assumption": ExitCode.OK,  # symbolic sizes: a guard torch recorded, untestable
    "not-derived": ExitCode.OK,  # symbolic sizes: what concrete runs could not establish
    "input-invalid": ExitCode.USAGE,
    "usage": ExitCode.USAGE,
    "file-error": ExitCode.USAGE,
    "missing-program": ExitCode.USAGE,  # a program a format needs (Graphviz's dot)
    "unsupported-torch": ExitCode.USAGE,  # a torch release shapecli was not tested on
    "internal": ExitCode.INTERNAL,
}


@dataclass(frozen=True)
class Source:
    """Where something is written: a file and a 1-based line and column.

    Line 0 means the file as a whole (it is missing, say), with no position in it.
    """

    #: Added: a layer's ``source`` in JSON once had no ``file`` (then "": not recorded)
    file: Annotated[str, Added(default="")]
    line: Annotated[int, Range(1), NullFor(0)]  # JSON: null for the file as a whole
    column: Annotated[int, Range(1), NullFor(0)]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.line > 0 else self.file


@dataclass(frozen=True)
class Problem:
    """One thing that is wrong, with everything a user needs to fix it.

    ``detail`` keeps a third party's own message (torch's, PyYAML's) verbatim, below
    ours; ``path`` is the dotted module path of the layer involved, when there is one.
    """

    code: Annotated[str, OneOf(EXIT_CODES)]
    message: str
    source: Source | None = None
    severity: Severity = "error"
    path: str | None = None
    layer_type: Annotated[str | None, Key("type")] = None
    input_shapes: tuple[tuple[int | str | None, ...], ...] | None = None
    expected: str | None = None
    produced_by: str | None = None
    hint: str | None = None
    detail: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> ExitCode:
        if self.severity == "warning":
            return ExitCode.OK
        return EXIT_CODES.get(self.code, ExitCode.INTERNAL)

    @property
    def headline(self) -> str:
        """The first line every text output prints: ``file:line:col: error[code] message``.

        A problem with no place in a file (a bad ``--input``) is shapecli's own complaint.
        """
        head = str(self.source) if self.source else "shapecli"
        return f"{head}: {self.severity}[{self.code}] {self.message}"

    def __str__(self) -> str:
        """The problem as the CLI prints it: its headline and indented details (the
        dataclass's ``repr`` stays the field dump, for debugging)."""
        from shapecli.render.format import problem_lines  # the renderers import this module

        return "\n".join(problem_lines(self))

    def located(self, source: Source | None) -> Problem:
        """This problem at ``source`` unless it already knows where it is."""
        return self if self.source is not None or source is None else replace(self, source=source)


class ShapecliError(Exception):
    """An expected failure that carries its :class:`Problem` — or several, when a step
    checks independent things (every entry of a spec) and reports them all at once.

    Raised anywhere in the pipeline; the CLI and the API turn it into output and an
    exit code. Anything *not* a ShapecliError reaching the top is a bug (exit 3).
    """

    def __init__(self, problem: Problem, *more: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.problems: tuple[Problem, ...] = (problem, *more)

    def __str__(self) -> str:
        """What the CLI prints first for each problem, so a caller of the Python API
        who prints the exception sees which file it is about (``.problem.message``
        alone has no file)."""
        return "\n".join(p.headline for p in self.problems)

    @property
    def exit_code(self) -> ExitCode:
        return self.problem.exit_code

    def __reduce__(self) -> tuple[type[ShapecliError], tuple[Problem, ...]]:
        """Rebuilt from its problems: ``Exception``'s own pickling would pass the message
        alone to ``__init__`` (a worker process's error must cross back intact)."""
        return (type(self), self.problems)


def internal_problem(error: BaseException, where: str = "") -> Problem:
    """A bug in shapecli, as a problem every output format can carry (exit 3)."""
    return Problem(
        "internal",
        f"internal error: {type(error).__name__}: {error}",
        hint=f"this is a bug in shapecli; run again with {where}--traceback (before the "
        "command) to see where it happened",
    )


def fail(
    code: str,
    message: str,
    source: Source | None = None,
    *,
    path: str | None = None,
    layer_type: str | None = None,
    hint: str | None = None,
    detail: str | None = None,
) -> ShapecliError:
    """Build a :class:`ShapecliError` in one expression: ``raise fail("spec-invalid", ...)``."""
    problem = Problem(
        code, message, source, path=path, layer_type=layer_type, hint=hint, detail=detail
    )
    return ShapecliError(problem)


def worst_exit_code(problems: list[Problem]) -> ExitCode:
    """The exit code for a set of problems: the most serious one wins."""
    return max((p.exit_code for p in problems), default=ExitCode.OK)


def raise_all(problems: list[Problem]) -> None:
    """Raise every collected problem at once, in file order; nothing if there are none."""
    unique: dict[tuple[str, str, Source | None], Problem] = {}
    for problem in problems:  # a block used twice reports its body once
        unique.setdefault((problem.code, problem.message, problem.source), problem)
    if unique:
        ordered = sorted(
            unique.values(), key=lambda p: (p.source.line, p.source.column) if p.source else (0, 0)
        )
        raise ShapecliError(*ordered)


_CPP_FRAME = re.compile(
    r"\s*(Exception raised from |frame #\d+:|<omitting python frames>|C\+\+ CapturedTraceback)"
)


def foreign_message(error: BaseException) -> str:
    """A third party's exception (torch's, a user layer's) as one honest line or few,
    kept below ours: ``RuntimeError: …``, without C++ backtraces — their addresses
    change every run and help no user."""
    lines = []
    for line in str(error).strip().splitlines():
        if _CPP_FRAME.match(line):
            break
        lines.append(line)
    text = "\n".join(lines).strip()
    return f"{type(error).__name__}: {text or '(no message)'}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean `x`?)`` for the closest choices (or one that differs only in
    case), or ``""``: the one wording of every suggestion shapecli makes."""
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {' or '.join(f'`{c}`' for c in close)}?)" if close else ""
