"""``--verify``: one real forward pass on the CPU, checked row by row against the dry run.

The report's shapes come from the meta device, where nothing is computed; this proves
them for one model. The same hook recorder the dry run uses (:mod:`shapecli.record`)
watches the real pass, so both runs are described the same way — each call of each
module, at the same module paths — and every row the dry run reported is compared: that
it ran in both passes or in neither, with the same input and output shapes (a size the
dry run did not derive, such as one that depends on an MoE's routing, fits any). The first
disagreement, in the report's order, is the error (``verify-mismatch``); a real pass that
raises where the dry run did not is one too.

**Inputs** have the declared shapes. Floats are standard normal, at the weights' dtype.
Integers are token ids: drawn below the smallest ``num_embeddings`` of any embedding
table in the model — an integer input may reach any table through the graph, and an id
valid for the smallest is valid for all (with no table: zeros). Booleans (masks) are all
True: every position may attend. Shapes never depend on values; these only have to be
valid. The draws use a generator of their own, so the global random state is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shapecli.errors import Problem, ShapecliError, foreign_message
from shapecli.inputs import InputSpec
from shapecli.observe import observe
from shapecli.record import HookFailure, Recorder
from shapecli.report import Report, Row, Shape, format_shape
from shapecli.spec.model import at_or_above


def verify(
    model: nn.Module,
    report: Report,
    inputs: Sequence[InputSpec],
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> int:
    """Run ``model`` once for real and compare with ``report``; return the number of rows
    whose shapes were compared, or raise ``verify-mismatch``."""
    tensors = real_inputs(model, inputs, seed, dtype)
    recorder = Recorder(model, {row.path for row in report.rows if row.entry})
    # eval mode, as the dry run: a batch of one is fine for batch norm; the dry run
    # reported the layers' warnings
    error = observe(model, tensors, hooks=(recorder,)).error
    if isinstance(error, HookFailure):  # shapecli's own hooks broke: a bug, not a disagreement
        raise error.__cause__ or error from None
    rows = {row.path: row for row in report.rows}
    if error is not None:
        path = recorder.stack[-1].path if recorder.stack else ""
        raise _disagreement(
            rows.get(path),
            path,
            " raised in the real forward pass, though the dry run passed it",
            report,
            detail=foreign_message(error),
            hint="some kernels exist on the meta device but not for this dtype on the CPU; "
            "otherwise the dry run missed this: please report it, with the spec",
        )
    checked = 0
    calls = {(c.path, c.index): c for c in recorder.calls}
    for row in report.rows:
        call = calls.get((row.path, row.call))
        ran = row.status == "ok"
        if ran and (call is None or call.outputs is None):
            raise _disagreement(row, row.path, " ran in the dry run but not for real", report)
        if not ran and call is not None:
            raise _disagreement(row, row.path, " ran for real but not in the dry run", report)
        if call is None or call.outputs is None:
            continue
        for what, meta, real in (
            ("received", row.input_shapes, tuple(i.shape for i in call.inputs)),
            ("returned", row.output_shapes, tuple(o.shape for o in call.outputs)),
        ):
            if not _fits(meta, real):
                message = (
                    f": the dry run says it {what} {_shapes(meta)}, the real forward pass "
                    f"{what} {_shapes(real)}"
                )
                raise _disagreement(row, row.path, message, report)
        checked += 1
    return checked


def _fits(claimed: tuple[Shape, ...], real: tuple[Shape, ...]) -> bool:
    """Do the real shapes have what the dry run claimed: the same tensors and ranks,
    and every size it derived? A size not derived (None: inside an MoE's experts, one
    that depends on the routing) claims nothing, so any real size fits it."""
    return len(claimed) == len(real) and all(
        len(c) == len(r) and all(d is None or d == e for d, e in zip(c, r, strict=True))
        for c, r in zip(claimed, real, strict=True)
    )


def real_inputs(
    model: nn.Module,
    inputs: Sequence[InputSpec],
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Tensors of the declared shapes with valid values (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    vocabulary = min(
        (
            m.num_embeddings
            for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag)
        ),
        default=1,
    )
    tensors = []
    for spec in inputs:
        shape = tuple(int(d) for d in spec.dims)
        kind: torch.dtype = getattr(torch, spec.dtype)
        if kind == torch.bool:
            tensors.append(torch.ones(shape, dtype=torch.bool))
        elif kind.is_floating_point:
            values = torch.randn(shape, generator=generator)
            tensors.append(values.to(dtype or kind))
        else:
            high = min(vocabulary, torch.iinfo(kind).max + 1)
            tensors.append(torch.randint(0, high, shape, generator=generator, dtype=kind))
    return tensors


def _shapes(shapes: tuple[Shape, ...]) -> str:
    return ", ".join(format_shape(s) for s in shapes) if shapes else "nothing"


def _disagreement(
    row: Row | None,
    path: str,
    what: str,
    report: Report,
    detail: str | None = None,
    hint: str = "the dry run's shapes are wrong for this model: please report it, with the spec",
) -> ShapecliError:
    label = f"layer {path} ({row.type})" if row is not None and path else "the model"
    source = row.source if row is not None else None
    if source is None:  # one of torch's own submodules: point at the entry around it
        outer = at_or_above(path, {r.path: r for r in report.rows if r.entry})
        source = outer.source if outer is not None else None
    return ShapecliError(
        Problem(
            "verify-mismatch",
            label + what,
            source,
            path=path,
            layer_type=row.type if row is not None else None,
            hint=hint,
            detail=detail,
        )
    )
