"""Small formatting helpers every renderer shares: shapes, counts, bytes, problems.

Text a user wrote (a name, a type, a file name, a message quoting a spec) goes through
:func:`~shapecli.untrusted.visible` before it is shown, here and in every renderer.
"""

from __future__ import annotations

from shapecli.analyses import footer_lines
from shapecli.errors import Problem
from shapecli.inputs import InputSpec, input_names
from shapecli.render.units import count_and_si, nbytes, si
from shapecli.report import ParamInfo, Report, Row, format_shape, format_shapes
from shapecli.untrusted import visible

__all__ = ["count_and_si", "nbytes", "si"]  # numbers are written in shapecli.render.units

shape = format_shape
shapes = format_shapes
#: How the table and the pictures mark the layer that failed.
FAIL_MARK = "✗"


def row_inputs(report: Report, row: Row) -> str:
    """A row's input shapes; when it takes several, each labelled where the report
    knows what it is — the keyword it was passed as, else the model input it is — and
    a model input's dtype unless it is float32: ``x=1×128×768, mask=1×128:bool``."""
    if len(row.input_shapes) < 2 or len(row.sources) != len(row.input_shapes):
        return shapes(row.input_shapes)
    dtypes = dict(zip(input_names(report.inputs), (i.dtype for i in report.inputs), strict=True))
    cells = []
    for dims, origin in zip(row.input_shapes, row.sources, strict=True):
        label = origin.arg or origin.input
        dtype = dtypes.get(origin.input, "float32") if origin.input else "float32"
        text = shape(dims) + (f":{dtype}" if dtype != "float32" else "")
        cells.append(f"{visible(label)}={text}" if label else text)
    return ", ".join(cells)


def inputs(specs: tuple[InputSpec, ...]) -> str:
    """``input 2x20``; named inputs by name: ``inputs ids 1x128:int64, mask 1x128:bool``."""
    if not any(spec.name for spec in specs):
        return "input " + ", ".join(str(spec) for spec in specs)
    named = (
        f"{visible(name)} {spec}" for name, spec in zip(input_names(specs), specs, strict=True)
    )
    return "inputs " + ", ".join(named)


def title(name: str, specs: tuple[InputSpec, ...]) -> str:
    """A model's title in the table and the pictures: ``gpt2 · input 1x1024:int64``."""
    return f"{visible(name)} · {inputs(specs)}" if specs else visible(name)


def type_label(row: Row) -> str:
    """The type as a table shows it: ``decoder ×4`` for a repeat group."""
    return visible(f"{row.type} ×{row.repeat}" if row.repeat else row.type)


def count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def flops_counted(report: Report) -> bool:
    """Were FLOPs counted (their total, or rows' where the total is not derived)?"""
    return report.totals.flops is not None or any(r.flops is not None for r in report.rows)


def flops(row: Row) -> str:
    """A row's FLOPs where they are counted: ``—`` for none (or a module never called);
    ``?`` for a call whose FLOPs are not derived (they follow its sizes, and some are
    not derived; or they depend on how an MoE routes)."""
    if row.flops:
        return count(row.flops)
    return "?" if row.flops is None and row.status == "ok" else "—"


def params(infos: tuple[ParamInfo, ...]) -> str:
    """``weight 256×20 · bias 256``; shared ones say where they live."""
    parts = []
    for p in infos:
        text = f"{visible(p.name)} {shape(p.shape) if p.shape is not None else '?'}"
        if p.shared_with:
            text += f" = {visible(p.shared_with)}"
        if not p.trainable:
            text += " (frozen)"
        parts.append(text)
    return " · ".join(parts)


def problem_lines(problem: Problem) -> list[str]:
    """A problem as text: its headline (``file:line:col: severity[code] message``) and
    indented details."""
    lines = [visible(problem.headline)]
    if problem.produced_by:
        lines.append(f"  the shape comes from {visible(problem.produced_by)}")
    lines.extend(f"  {visible(note)}" for note in problem.notes)
    if problem.hint:
        lines.append(f"  hint: {visible(problem.hint)}")
    if problem.detail:
        detail = [visible(line) for line in problem.detail.splitlines()]
        lines.append(
            f"  torch: {detail[0]}" if problem.code == "shape-mismatch" else f"  {detail[0]}"
        )
        lines.extend(f"    {line}" for line in detail[1:])
    return lines


def summary_lines(report: Report, shown: list[Row] | None = None) -> list[str]:
    """The footer every human-facing format prints under the rows."""
    t = report.totals
    lines = [
        f"Total params: {t.params:,}"
        + ("" if t.complete else " (so far: some layers did not run)"),
        f"Trainable: {t.trainable:,} · non-trainable: {t.non_trainable:,} · "
        f"shared: {t.shared:,} (counted once)",
        f"Parameter memory: {nbytes(t.param_bytes)} ({t.param_dtype}) · activation memory: "
        + (
            f"{nbytes(t.activation_bytes)} (one forward pass)"
            if t.activation_bytes is not None
            else f"depends on {', '.join(report.symbols)}"
            if report.symbols
            else "not derived (see the warnings)"
        ),
    ]
    lines += footer_lines(report)
    if any(r.inferred for r in (report.rows if shown is None else shown)):
        lines.append("* input size inferred by the dry run")
    lines.append(f"Dry run on the {report.device} device: no memory was allocated.")
    return lines
