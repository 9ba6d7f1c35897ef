"""What the recorder saw + the module tree + the graph → the report's rows and totals.

A row is one *call* of a module, in the order calls began: a module called twice (one
``self.relu`` after each convolution) has two rows, the second ``call`` 1. A call made
through a ``Ref`` is the Ref's row (the Ref is a module of its own), so what it runs
again is not listed twice. A module that was never called (``MultiheadAttention``
uses its ``out_proj`` weights without calling it; what comes after a failure) still
has a row, after the calls of the module it is in, so its parameters are counted
where they live. Parameters are counted once, at the first place they are registered
and at their module's first call; elsewhere they are listed as shared.

Each row's ``sources`` and ``returns`` are the graph's edges (:mod:`shapecli.ir`): the
spec's, or the one the pass traced for a Python model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

from torch import nn
from torch.nn.parameter import UninitializedParameter

from shapecli.construct import BuiltModel
from shapecli.ir import join, returns_of, sources_of
from shapecli.layers import own
from shapecli.layers.auto import AutoSized
from shapecli.record import Call, Recorder, dtype_name
from shapecli.report import Origin, ParamInfo, Row, RowStatus, Totals


@dataclass(frozen=True)
class _Params:
    """Every parameter's first place, and how often each is used."""

    owner: dict[int, str]
    unique: dict[int, nn.Parameter]
    uses: Counter[int]


def assemble(
    built: BuiltModel,
    recorder: Recorder | None,
    name: str,
    failed: set[int],
    inputs: tuple[str, ...] = (),
) -> tuple[list[Row], Totals]:
    """One row per call (and per module never called) and the totals. ``failed`` holds
    the ids of the calls still open when the pass failed; ``inputs`` names the model's
    inputs."""
    modules = list(built.model.named_modules())
    found = _parameters(modules)
    infos = {path: _param_infos(path, module, found.owner) for path, module in modules}
    own_counts = {path: sum(p.count or 0 for p in infos[path]) for path, _ in modules}
    subtree = _subtree_sums(own_counts)
    first = recorder.first if recorder else {}
    same_as = _same_as(built, first)
    graph = built.graph
    if graph is None and recorder is not None:
        from shapecli.trace import traced_graph

        graph = traced_graph(recorder.calls, inputs)
    nodes = {(n.path, n.call): n for n in graph.nodes() if n.op == "call"} if graph else {}
    by_path = dict(modules)
    rows = []
    activations = 0  # what every leaf call returned
    for path, made in _in_call_order([p for p, _ in modules], recorder, by_path):
        module = by_path[path]
        entry = built.entries.get(path)
        index = made.index if made is not None else 0
        call = made or first.get(path)  # a replayed copy's submodules: what copy 0's did
        if call is not None and call.outputs and not module._modules:
            activations += sum(o.nbytes for o in call.outputs)
        status: RowStatus = (
            "failed" if call is not None and id(call) in failed else "ok" if call else "not-run"
        )
        type_name = type(module).__name__
        if entry is not None:
            type_name = entry.display_type
            if isinstance(module, own.Ref) and entry.repeat is None:
                type_name = f"Ref → {module.path}"
        node = nodes.get((path, index))
        merge, returned = returns_of(node) if node is not None else (None, ())
        again = index > 0
        rows.append(
            Row(
                path=path,
                name=path.rsplit(".", 1)[-1] if path else name,
                type=type_name,
                depth=path.count(".") + 1 if path else 0,
                source=entry.source if entry else None,
                input_shapes=tuple(i.shape for i in call.inputs) if call else (),
                output_shapes=tuple(o.shape for o in call.outputs or ()) if call else (),
                params=_again(infos[path], path) if again else infos[path],
                param_count=0 if again else subtree[path],
                flops=call.flops if call is not None else None,
                entry=entry is not None,
                inferred=path in built.lazy and not again,
                status=status,
                same_as=None if again else same_as.get(path),
                repeat=entry.repeat if entry is not None else None,
                sources=_expand(sources_of(node), inputs) if node is not None else (),
                call=index,
                returns=_expand(returned, inputs),
                merge=merge,
                arguments=held_arguments(module),
            )
        )
    return rows, _totals(built, modules, found, recorder, activations)


def _in_call_order(
    paths: list[str], recorder: Recorder | None, modules: dict[str, nn.Module]
) -> Iterator[tuple[str, Call | None]]:
    """Every call in the order calls began, each module never called after the calls of
    the module it is in (in module order); calls made through a ``Ref`` left out."""
    children: dict[str, list[str]] = {}
    for path in paths[1:] if paths and paths[0] == "" else paths:
        children.setdefault(path.rpartition(".")[0], []).append(path)
    made: dict[int | None, list[Call]] = {}
    for call in recorder.calls if recorder else ():
        made.setdefault(id(call.parent) if call.parent else None, []).append(call)
    placed: set[str] = set()

    def ancestors(path: str) -> Iterator[tuple[str, Call | None]]:
        """The modules around ``path`` not placed yet (containers never called)."""
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            above = ".".join(parts[:i])
            if above != path and above not in placed and above in modules:
                placed.add(above)
                yield above, None

    def uncalled(path: str) -> Iterator[tuple[str, Call | None]]:
        for child in children.get(path, ()):
            if child not in placed:
                placed.add(child)
                yield child, None
            yield from uncalled(child)

    def visit(call: Call) -> Iterator[tuple[str, Call | None]]:
        yield from ancestors(call.path)
        placed.add(call.path)
        yield call.path, call
        if not isinstance(modules.get(call.path), own.Ref):  # its target's call is its own
            for inner in made.get(id(call), ()):
                yield from visit(inner)
        yield from uncalled(call.path)

    for call in made.get(None, ()):
        yield from visit(call)
    if "" not in placed and "" in modules:
        placed.add("")
        yield "", None
    yield from uncalled("")


def _again(infos: tuple[ParamInfo, ...], path: str) -> tuple[ParamInfo, ...]:
    """A module's parameters as a later call of it lists them: counted at its first."""
    return tuple(
        replace(
            p,
            count=0 if p.count is not None else None,
            shared_with=p.shared_with or join(path, p.name),
        )
        for p in infos
    )


def _expand(origins: tuple[Origin, ...], inputs: tuple[str, ...]) -> tuple[Origin, ...]:
    """``all the model's inputs`` (a version-1 model's first entry) by name."""
    expanded: list[Origin] = []
    for origin in origins:
        if origin.input == "*":
            expanded += [Origin(input=name, arg=origin.arg) for name in inputs]
        else:
            expanded.append(origin)
    return tuple(expanded)


def _parameters(modules: list[tuple[str, nn.Module]]) -> _Params:
    owner: dict[int, str] = {}
    unique: dict[int, nn.Parameter] = {}
    uses: Counter[int] = Counter()
    for path, module in modules:
        for pname, param in module._parameters.items():
            if param is None or isinstance(param, UninitializedParameter):
                continue
            uses[id(param)] += 1
            if id(param) not in owner:
                owner[id(param)] = join(path, pname)
                unique[id(param)] = param
        if isinstance(module, own.Ref) and module.target is not None:
            for param in module.target.parameters():
                uses[id(param)] += 1
    return _Params(owner, unique, uses)


def _totals(
    built: BuiltModel,
    modules: list[tuple[str, nn.Module]],
    found: _Params,
    recorder: Recorder | None,
    activations: int,
) -> Totals:
    unique = found.unique.values()
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    total = sum(p.numel() for p in unique)
    dtypes = Counter(dtype_name(p.dtype) for p in unique)
    complete = not any(
        isinstance(m, AutoSized) or isinstance(p, UninitializedParameter)
        for _, m in modules
        for p in [*m._parameters.values(), None]
    )
    return Totals(
        params=total,
        trainable=trainable,
        non_trainable=total - trainable,
        shared=sum(p.numel() for i, p in found.unique.items() if found.uses[i] > 1),
        param_bytes=sum(p.numel() * p.element_size() for p in unique),
        activation_bytes=activations if recorder else 0,
        param_dtype=dtypes.most_common(1)[0][0] if dtypes else "float32",
        complete=complete,
    )


def _same_as(built: BuiltModel, first: dict[str, Call]) -> dict[str, str]:
    """Repeat copies that received and returned exactly what the first copy did."""
    found = {}
    for path, entry in built.entries.items():
        call0 = first.get(join(path, "0")) if entry.repeat is not None else None
        if call0 is None or call0.outputs is None:
            continue
        for i in range(1, entry.repeat or 1):
            call = first.get(join(path, str(i)))  # equal outputs: it returned, as copy 0 did
            if call is not None and (call.inputs, call.outputs) == (call0.inputs, call0.outputs):
                found[join(path, str(i))] = join(path, "0")
    return found


def _param_infos(path: str, module: nn.Module, owner: dict[int, str]) -> tuple[ParamInfo, ...]:
    """The parameters ``module`` owns directly; a Ref lists its target's, as shared."""
    infos = []
    for pname, param in module._parameters.items():
        if param is None:
            continue
        if isinstance(param, UninitializedParameter):
            infos.append(ParamInfo(pname, None, None, param.requires_grad))
            continue
        first = owner[id(param)]
        mine = first == join(path, pname)
        infos.append(
            ParamInfo(
                pname,
                tuple(int(d) for d in param.shape),
                param.numel() if mine else 0,
                param.requires_grad,
                None if mine else first,
            )
        )
    if isinstance(module, own.Ref) and module.target is not None:
        for pname, param in module.target.named_parameters():
            if not isinstance(param, UninitializedParameter):
                infos.append(
                    ParamInfo(
                        pname,
                        tuple(int(d) for d in param.shape),
                        0,
                        param.requires_grad,
                        owner[id(param)],
                    )
                )
    return tuple(infos)


def _subtree_sums(own_counts: dict[str, int]) -> dict[str, int]:
    """Each path's own count plus all its descendants', in O(modules × depth)."""
    sums = dict.fromkeys(own_counts, 0)
    for path, count in own_counts.items():
        if not count:
            continue
        sums[""] += count
        parts = path.split(".") if path else []
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in sums:
                sums[prefix] += count
    return sums


def held_arguments(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """The constructor arguments ``module`` keeps as attributes of the same name, each
    written as Python writes it: what torch's layers (``stride``, ``dilation``,
    ``approximate``…) and most user modules do. Read from the module as built, not from
    what made it, so a spec's ``LazyConv2d: {kernel_size: 3}`` and a model's
    ``nn.Conv2d(3, 64, 3)`` say the same ``kernel_size: (3, 3)``. Parameters, buffers
    and submodules are left out (the report shows them), and so is anything that is not
    plain data (numbers, text, booleans, None, and tuples or lists of them)."""
    from shapecli.layers.arguments import signature

    try:
        names = [
            p.name
            for p in signature(type(module)).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # a constructor inspect cannot read: nothing to say
        return ()
    held = vars(module)
    slots = (module._parameters, module._buffers, module._modules)
    return tuple(
        (name, repr(_plain(held[name])))
        for name in names
        if name in held and not any(name in slot for slot in slots) and _is_plain(held[name])
    )


def _is_plain(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple | list) and all(_is_plain(v) for v in value)


def _plain(value: object) -> object:
    """A list as the tuple it stands for (torch keeps some sizes as lists)."""
    return tuple(_plain(v) for v in value) if isinstance(value, tuple | list) else value
