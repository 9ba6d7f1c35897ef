"""The Report: everything a dry run learned, as plain data.

The dry run fills these dataclasses; renderers are pure functions of them. Nothing
here imports torch, so renderers and their tests run without it. :func:`to_json`
is the stable machine-readable form (``schema_version`` 1, documented in the README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shapecli.errors import Problem, Source
from shapecli.inputs import InputSpec, input_names

SCHEMA_VERSION = 1

#: A size: a number, a formula over symbolic sizes, or None for one not derived.
Dim = int | str | None
Shape = tuple[Dim, ...]
RowStatus = Literal["ok", "failed", "not-run"]


def format_shape(dims: Shape | tuple[int, ...]) -> str:
    """``2×20``; a scalar tensor is ``()``; a formula is parenthesized when it is more
    than a name: ``B×16×((H - 1)//2 + 1)``; a size not derived is ``?``. One spelling
    for messages and tables."""
    if not dims:
        return "()"
    return "×".join(
        "?" if d is None else str(d) if isinstance(d, int) or d.isidentifier() else f"({d})"
        for d in dims
    )


@dataclass(frozen=True)
class Origin:
    """Where one input of a row came from: the output of the row at ``path``, or the
    model input called ``input``; ``arg`` names the keyword it was passed as."""

    path: str | None = None
    input: str | None = None
    arg: str | None = None


@dataclass(frozen=True)
class ParamInfo:
    """One parameter a module owns directly.

    ``shape`` and ``count`` are ``None`` while a lazy parameter is uninitialized (its
    layer never ran). A parameter registered in several places is counted at its first
    place only; the others carry ``shared_with`` (its first place's path) and count 0.
    """

    name: str
    shape: Shape | None
    count: int | None
    trainable: bool = True
    shared_with: str | None = None


@dataclass(frozen=True)
class Row:
    """One module of the tree. ``entry`` rows are what the spec wrote; the others are
    torch's own submodules (shown in the table only with ``--depth``)."""

    path: str
    name: str
    type: str
    depth: int
    source: Source | None = None
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    params: tuple[ParamInfo, ...] = ()
    param_count: int = 0
    flops: int | None = None
    entry: bool = True
    inferred: bool = False
    status: RowStatus = "ok"
    same_as: str | None = None  # a repeat copy that took and gave what copy 0 did
    repeat: int | None = None  # for a repeat group: how many copies
    sources: tuple[Origin, ...] = ()  # where each input came from


@dataclass(frozen=True)
class Memory:
    """Estimated bytes (see :mod:`shapecli.memory` for how each is counted). The
    training figures are None unless the training estimate was asked for."""

    params: int = 0
    buffers: int = 0
    forward_activations: int = 0
    gradients: int | None = None
    optimizer: str | None = None
    optimizer_state: int | None = None
    saved_for_backward: int | None = None

    @property
    def training_peak(self) -> int | None:
        parts = (self.gradients, self.optimizer_state, self.saved_for_backward)
        if any(p is None for p in parts):
            return None
        return self.params + self.buffers + sum(p or 0 for p in parts)


@dataclass(frozen=True)
class Totals:
    params: int = 0
    trainable: int = 0
    non_trainable: int = 0
    shared: int = 0
    param_bytes: int = 0
    activation_bytes: int | None = 0  # None when sizes are symbolic
    flops: int | None = None
    param_dtype: str = "float32"
    complete: bool = True  # False when some lazy parameters never got a size
    memory: Memory | None = None


@dataclass(frozen=True)
class Report:
    name: str
    spec: str
    inputs: tuple[InputSpec, ...]
    rows: tuple[Row, ...] = ()
    totals: Totals = field(default_factory=Totals)
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    device: str = "meta"
    ran: bool = True  # False when there was no input to dry-run with
    #: Symbolic sizes: their names, the sizes accepted (``H >= 4``; None when not
    #: derived), and the sample sizes of the first run.
    symbols: tuple[str, ...] = ()
    constraints: tuple[str, ...] | None = ()
    samples: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def failed_report(
    name: str, spec: str, inputs: tuple[InputSpec, ...], *problems: Problem
) -> Report:
    """The report of a spec that could not be built or run at all (nothing was built, so
    its totals are not complete)."""
    errors = tuple(p for p in problems if p.severity == "error")
    warnings = tuple(p for p in problems if p.severity == "warning")
    return Report(
        name=name,
        spec=spec,
        inputs=inputs,
        errors=errors,
        warnings=warnings,
        ran=False,
        totals=Totals(complete=False),
    )


# -- JSON --------------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    """The stable JSON form of a report (``schema_version`` 1)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "name": report.name,
        "spec": report.spec,
        "device": report.device,
        "inputs": [
            {"name": name, "shape": list(i.dims), "dtype": i.dtype}
            for name, i in zip(input_names(report.inputs), report.inputs, strict=True)
        ],
        "ok": report.ok,
        "symbols": list(report.symbols),
        "samples": dict(report.samples),
        "constraints": None if report.constraints is None else list(report.constraints),
        "layers": [_row_json(row) for row in report.rows],
        "totals": totals_json(report.totals),
        "errors": [problem_json(p) for p in report.errors],
        "warnings": [problem_json(p) for p in report.warnings],
    }


def totals_json(totals: Totals) -> dict[str, Any]:
    """The totals as JSON: the same in ``inspect`` and in each file of ``lint``."""
    return {
        "params": totals.params,
        "trainable": totals.trainable,
        "non_trainable": totals.non_trainable,
        "shared": totals.shared,
        "param_bytes": totals.param_bytes,
        "activation_bytes": totals.activation_bytes,
        "flops": totals.flops,
        "param_dtype": totals.param_dtype,
        "complete": totals.complete,
        "memory": _memory_json(totals.memory) if totals.memory is not None else None,
    }


def _memory_json(memory: Memory) -> dict[str, Any]:
    return {
        "params": memory.params,
        "buffers": memory.buffers,
        "forward_activations": memory.forward_activations,
        "gradients": memory.gradients,
        "optimizer": memory.optimizer,
        "optimizer_state": memory.optimizer_state,
        "saved_for_backward": memory.saved_for_backward,
        "training_peak": memory.training_peak,
    }


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "path": row.path,
        "name": row.name,
        "type": row.type,
        "depth": row.depth,
        "entry": row.entry,
        "source": {"line": row.source.line, "column": row.source.column} if row.source else None,
        "input_shapes": [list(s) for s in row.input_shapes],
        "output_shapes": [list(s) for s in row.output_shapes],
        "params": [
            {
                "name": p.name,
                "shape": list(p.shape) if p.shape is not None else None,
                "count": p.count,
                "trainable": p.trainable,
                "shared_with": p.shared_with,
            }
            for p in row.params
        ],
        "param_count": row.param_count,
        "flops": row.flops,
        "inferred": row.inferred,
        "status": row.status,
        "same_as": row.same_as,
        "repeat": row.repeat,
        "sources": [{"path": o.path, "input": o.input, "arg": o.arg} for o in row.sources],
    }


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as JSON: the same shape in ``inspect`` and ``lint`` output."""
    source = problem.source
    return {
        "code": problem.code,
        "severity": problem.severity,
        "message": problem.message,
        "path": problem.path,
        "type": problem.layer_type,
        "source": (
            {
                "file": source.file,
                "line": source.line or None,
                "column": source.column or None,
            }
            if source
            else None
        ),
        "input_shapes": [list(s) for s in problem.input_shapes] if problem.input_shapes else None,
        "expected": problem.expected,
        "produced_by": problem.produced_by,
        "hint": problem.hint,
        "detail": problem.detail,
        "notes": list(problem.notes),
    }


def from_json(doc: Any) -> Report:
    """A report saved with ``inspect --format json``, read back (what ``diff`` compares).

    Only what a comparison needs is kept: rows, totals, inputs, errors as messages.
    Raises ValueError on a document that is not a shapecli report.
    """
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"not a shapecli report (schema_version {SCHEMA_VERSION})")
    try:
        rows = tuple(
            Row(
                path=row["path"],
                name=row["name"],
                type=row["type"],
                depth=row["depth"],
                input_shapes=tuple(tuple(s) for s in row["input_shapes"]),
                output_shapes=tuple(tuple(s) for s in row["output_shapes"]),
                params=tuple(
                    ParamInfo(
                        p["name"],
                        tuple(p["shape"]) if p["shape"] is not None else None,
                        p["count"],
                        p["trainable"],
                        p["shared_with"],
                    )
                    for p in row["params"]
                ),
                param_count=row["param_count"],
                flops=row.get("flops"),
                entry=row.get("entry", True),
                status=row.get("status", "ok"),
                repeat=row.get("repeat"),
            )
            for row in doc["layers"]
        )
        totals = doc["totals"]
        inputs = tuple(
            InputSpec(tuple(i["shape"]), i["dtype"], i.get("name")) for i in doc["inputs"]
        )
        errors = tuple(Problem(e["code"], e["message"]) for e in doc.get("errors", ()))
        return Report(
            name=doc["name"],
            spec=doc["spec"],
            inputs=inputs,
            rows=rows,
            totals=Totals(
                params=totals["params"],
                trainable=totals["trainable"],
                non_trainable=totals["non_trainable"],
                shared=totals["shared"],
                param_bytes=totals["param_bytes"],
            ),
            errors=errors,
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"a shapecli report, but {type(e).__name__}: {e}") from None
