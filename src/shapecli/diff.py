"""Two reports, layer by layer: what changed in shapes and counts.

Writing a spec for a published network ends with one question — is it the same network?
— and a pull request that edits a config asks another — what did it change? Both are
answered on :class:`~shapecli.report.Report`\\ s, however they were made (a spec, a
saved JSON report, a Python model).

**What is compared.** The *units* of each model: the modules that own parameters, and
the leaves. Containers are left out: how layers are grouped is not what makes two
networks different, and their counts are sums of their units'.

**How units are paired.** By structure: a sequence alignment (difflib's, without its
junk heuristic) of the two lists of units, in order, keyed by what a unit *is* — the
shapes of its own parameters and of its outputs — not by its name. So ``features.0``
and ``conv1`` pair up when they are the same convolution, an inserted layer shows as
added rather than shifting every name after it, and where a run of units differs,
they pair in order as changed. Shapes and counts decide whether two units differ;
their types are shown when they differ, but a ``LazyLinear`` is a ``Linear``.

**What a Python model cannot show.** Its rows are its module tree, and a module tree
leaves out what ``forward`` does with functions (``F.relu``, ``torch.flatten``) and
shows a module called twice (one ``self.relu`` after each convolution) once. So when
one side is a Python model, a parameter-free unit found only on the other side is
*unseen*, not removed: it is listed, and it does not make the models differ.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from shapecli.report import Report, Row, Shape

Status = Literal["same", "changed", "added", "removed", "unseen"]


@dataclass(frozen=True)
class Change:
    """One unit of either model: paired (same or changed), or only on one side."""

    status: Status
    a: Row | None
    b: Row | None
    differences: tuple[str, ...] = ()

    @property
    def delta(self) -> int:
        """How many more parameters the unit owns in B."""
        return own_count(self.b) - own_count(self.a)


@dataclass(frozen=True)
class Diff:
    a: Report
    b: Report
    changes: tuple[Change, ...]

    @property
    def differs(self) -> bool:
        """Do the shapes or counts differ anywhere (units, totals, the model's output)?"""
        if any(c.status not in ("same", "unseen") for c in self.changes):
            return True
        if self.a.totals.params != self.b.totals.params:
            return True
        return self.output(self.a) != self.output(self.b)

    @staticmethod
    def output(report: Report) -> tuple[Shape, ...]:
        return report.rows[0].output_shapes if report.rows else ()

    def count(self, status: Status) -> int:
        return sum(1 for c in self.changes if c.status == status)


def own_count(row: Row | None) -> int:
    return sum(p.count or 0 for p in row.params) if row is not None else 0


def own_shapes(row: Row) -> tuple[tuple[str, Shape | None], ...]:
    """The unit's own parameters (a tied one is the tensor it is tied to: left out)."""
    return tuple((p.name, p.shape) for p in row.params if not p.shared_with)


def units(report: Report) -> list[Row]:
    """The modules that own parameters (the model itself included: a Python model may
    keep a position table on its root), and the leaves, in order."""
    parents = {row.path.rpartition(".")[0] for row in report.rows if row.path}
    return [
        row
        for row in report.rows
        if (own_shapes(row) or row.path not in parents) and row.status != "failed"
    ]


def diff(a: Report, b: Report) -> Diff:
    """Pair the units of ``a`` and ``b`` (see the module docstring) and say how they differ."""
    left, right = units(a), units(b)

    def key(row: Row) -> tuple[object, ...]:
        return (tuple(shape for _, shape in own_shapes(row)), row.output_shapes)

    matcher = difflib.SequenceMatcher(
        None, [key(r) for r in left], [key(r) for r in right], autojunk=False
    )
    changes: list[Change] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
        if op == "equal":
            changes += [_compare(left[i1 + k], right[j1 + k]) for k in range(i2 - i1)]
            continue
        changes += [_compare(left[i1 + k], right[j1 + k]) for k in range(pairs)]
        changes += [_only(row, None, "removed", b) for row in left[i1 + pairs : i2]]
        changes += [_only(None, row, "added", a) for row in right[j1 + pairs : j2]]
    return Diff(a, b, tuple(changes))


def _only(a: Row | None, b: Row | None, status: Status, other: Report) -> Change:
    """A unit on one side only: unseen when it owns no parameters and the other side is
    a Python model, which cannot show such a layer (see the module docstring)."""
    row = a or b
    assert row is not None
    if not row.params and is_python_model(other):
        return Change("unseen", a, b)
    return Change(status, a, b)


def is_python_model(report: Report) -> bool:
    """Was ``report`` made from a Python model (directly or through its saved JSON)?"""
    from shapecli.pymodel import TARGET

    return bool(TARGET.fullmatch(report.spec))


def _compare(a: Row, b: Row) -> Change:
    differences = []
    if a.output_shapes != b.output_shapes:
        differences.append(f"output {_shapes(a.output_shapes)} → {_shapes(b.output_shapes)}")
    if own_shapes(a) != own_shapes(b):
        differences.append(f"parameters {_params(a)} → {_params(b)}")
    status: Status = "changed" if differences else "same"
    if _plain_type(a.type) != _plain_type(b.type):
        differences.append(f"type {a.type} → {b.type}")  # shown, but does not decide
    return Change(status, a, b, tuple(differences))


def _plain_type(name: str) -> str:
    return name.removeprefix("Lazy")


def _shapes(shapes: tuple[Shape, ...]) -> str:
    from shapecli.report import format_shape

    return ", ".join(format_shape(s) for s in shapes) or "nothing"


def _params(row: Row) -> str:
    from shapecli.report import format_shape

    parts = [f"{name} {format_shape(shape) if shape else '?'}" for name, shape in own_shapes(row)]
    return " · ".join(parts) or "none"
