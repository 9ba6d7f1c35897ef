"""What a dry run cannot know of a layer that routes rows by their values.

A layer that routes rows by their values (an ``MoE``, marked
``ROUTED_INSIDE``) cannot route on meta tensors: it deals each expert an even share,
and a real run deals by score. So a model that has one runs a second time, each such
layer dealing every expert another number of rows that a router could give it (see
:func:`routed_blind`); every size inside the model that differs between the two runs
depends on the routing and is not derived (None), and so are the FLOPs of its row.
Counting FLOPs, it runs once more with the rows routed as unevenly as a router can
(:func:`flops_blind`): FLOPs that change (experts of different widths) are not derived
either.

:func:`~shapecli.dryrun.dry_run` makes those passes; this module compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from torch import nn

from shapecli.construct import BuiltModel
from shapecli.errors import Problem
from shapecli.record import Call, Recorder
from shapecli.report import Row, Shape


def routes(model: nn.Module) -> bool:
    """Does ``model`` hold a layer whose insides see value-dependent shapes (an MoE)?"""
    return any(_routing(m) for m in model.modules())


def routing_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every layer of ``model`` whose insides see value-dependent shapes, by path."""
    return [(path, m) for path, m in model.named_modules() if _routing(m)]


def named(model: nn.Module) -> str:
    """The routing layers of ``model`` as a message names them: ``layer 1 (MoE)``, or
    ``layers 1 (MoE), 3 (MoE)``."""
    layers = [f"{path} ({type(m).__name__})" for path, m in routing_layers(model)]
    return f"layer{'s' if len(layers) > 1 else ''} {', '.join(layers)}"


def _routing(module: nn.Module) -> bool:
    return bool(getattr(module, "ROUTED_INSIDE", False))


class Dealing:
    """While installed, every routing layer deals its rows as ``dealing`` says (an
    MoE's ``dealing``)."""

    def __init__(self, model: nn.Module, dealing: str) -> None:
        self.model = model
        self.dealing = dealing

    def install(self) -> None:
        for _, module in routing_layers(self.model):
            vars(module)["dealing"] = self.dealing  # on the instance, for this pass

    def remove(self) -> None:
        for module in self.model.modules():  # replicas made during the pass too
            vars(module).pop("dealing", None)


def routed_blind(rows: Sequence[Row], other: Recorder | None, model: nn.Module) -> list[Row]:
    """``rows`` with every size that ``other`` (a pass dealt otherwise) saw differently
    as None, and the FLOPs of a row with such a size as None.

    Rows are matched as :func:`_matched` says. A row that returned in one
    pass and not in the other, or that the other did not make at all, has every size
    not derived; a tensor of another rank, every size of that tensor. Without
    ``other`` (the first pass failed), every size inside a routing layer is not
    derived."""
    if other is None:
        routing = [path for path, _ in routing_layers(model)]
        return [
            _blinded(row, None) if any(_inside(row.path, path) for path in routing) else row
            for row in rows
        ]
    matched = _matched(other)
    return [_blinded(row, matched(row)) for row in rows]


def _inside(path: str, outer: str) -> bool:
    """Is the module at ``path`` strictly inside the one at ``outer``?"""
    return path != outer and (not outer or path.startswith(f"{outer}."))


def flops_blind(
    built: BuiltModel, rows: Sequence[Row], packed: Recorder
) -> tuple[list[Row], list[Problem]]:
    """``rows`` with the FLOPs that ``packed`` (a pass with the rows routed as unevenly
    as a router can) counted otherwise as None, and a warning at each routing layer
    whose own FLOPs that leaves not derived.

    An expert whose cost grows in proportion to its rows costs the same in total for
    any routing when every expert costs the same per row; experts of different widths,
    or an expert whose cost is not proportional (attention over its rows), make the
    total depend on the routing."""
    calls = _matched(packed)
    blind = []
    routing = []
    for row in rows:
        call = calls(row)
        if row.flops is None or (call is not None and call.flops == row.flops):
            blind.append(row)
            continue
        blind.append(replace(row, flops=None))
        module = built.model.get_submodule(row.path) if row.path else built.model
        if _routing(module) and not row.call:
            routing.append(
                Problem(
                    "not-derived",
                    f"the FLOPs of layer {row.path} ({row.type}), of the layers around it and "
                    "the total are not derived: its experts do not cost the same for every "
                    "routing (they cost differently per row, or not in proportion to their rows)",
                    row.source,
                    severity="warning",
                    path=row.path,
                    layer_type=row.type,
                )
            )
    return blind, routing


def activations_blind(built: BuiltModel) -> Problem:
    """The warning for a model whose activation memory a pass routed unevenly counted
    otherwise (experts that return different sizes per row): it, and the memory figures
    made from it, are not derived."""
    path = routing_layers(built.model)[0][0]  # the warning stands at the first
    entry = built.entries.get(path)
    return Problem(
        "not-derived",
        "the activation memory and the training estimate are not derived: they depend on "
        f"how the rows are routed inside {named(built.model)} (experts that return "
        "different sizes per row)",
        entry.source if entry is not None else None,
        severity="warning",
        path=path,
        layer_type=entry.type if entry is not None else None,
    )


def routed_problem(problem: Problem, model: nn.Module) -> Problem:
    """``problem`` (a layer that failed), saying so when the layer is inside a routing
    layer: the row counts it quotes are the dry run's even share, not the router's (its
    shapes in JSON are not derived, as the rows are)."""
    path = problem.path
    outer = next(
        ((p, m) for p, m in routing_layers(model) if path is not None and _inside(path, p)),
        None,
    )
    if outer is None:
        return problem
    note = (
        f"inside layer {outer[0]} ({type(outer[1]).__name__}) the row counts are the dry "
        "run's even share of the routed rows; a real run's are the router's choice"
    )
    shapes = problem.input_shapes
    return replace(
        problem,
        notes=(*problem.notes, note),
        input_shapes=not_derived(shapes) if shapes is not None else None,
    )


def _matched(other: Recorder) -> Callable[[Row], Call | None]:
    """A row's call in the pass ``other`` recorded: by (path, call), and a replayed
    copy's submodules by what copy 0's did, as :func:`~shapecli.assemble.assemble`
    reads them."""
    calls = {(c.path, c.index): c for c in other.calls}

    def matched(row: Row) -> Call | None:
        return calls.get((row.path, row.call)) or (
            other.first.get(row.path) if not row.call else None
        )

    return matched


def _blinded(row: Row, call: Call | None) -> Row:
    """``row`` with the sizes ``call`` (its call in the other pass) did not share as
    None, and then its FLOPs too."""
    seen: tuple[tuple[Shape, ...], tuple[Shape, ...]] = ((), ())
    if call is not None and call.done == (row.status == "ok"):
        seen = (tuple(i.shape for i in call.inputs), tuple(o.shape for o in call.outputs or ()))
    inputs = agreed(row.input_shapes, seen[0])
    outputs = agreed(row.output_shapes, seen[1])
    if (inputs, outputs) == (row.input_shapes, row.output_shapes):
        return row
    return replace(row, input_shapes=inputs, output_shapes=outputs, flops=None)


def agreed(shapes: tuple[Shape, ...], others: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """``shapes`` with each size ``others`` does not share as None (every size of a
    tensor ``others`` has no counterpart of the same rank for)."""
    if len(shapes) != len(others):
        return not_derived(shapes)
    return tuple(
        tuple(d if d == e else None for d, e in zip(shape, other, strict=True))
        if len(shape) == len(other)
        else not_derived((shape,))[0]
        for shape, other in zip(shapes, others, strict=True)
    )


def not_derived(shapes: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """The same tensors and ranks, every size not derived."""
    return tuple(tuple(None for _ in shape) for shape in shapes)
