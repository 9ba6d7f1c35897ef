"""What the recorder saw + the module tree → the report's rows and totals.

A row is one module of the tree; it shows the module's *first* call (a ``Ref`` row is a
module of its own, so a reuse shows its own call). Parameters are counted once, at the
first place they are registered; elsewhere they are listed as shared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from torch import nn
from torch.nn.parameter import UninitializedParameter

from shapecli import ir
from shapecli.construct import BuiltModel
from shapecli.layers import own
from shapecli.layers.auto import AutoSized
from shapecli.record import Call, Recorder, dtype_name
from shapecli.report import Origin, ParamInfo, Row, RowStatus, Totals


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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
    failed: set[str],
    inputs: tuple[str, ...] = (),
) -> tuple[list[Row], Totals]:
    """Rows for every module and the totals. ``failed`` holds the paths of the calls
    still open when the pass failed; ``inputs`` names the model's inputs."""
    modules = list(built.model.named_modules())
    found = _parameters(modules)
    infos = {path: _param_infos(path, module, found.owner) for path, module in modules}
    own_counts = {path: sum(p.count or 0 for p in infos[path]) for path, _ in modules}
    subtree = _subtree_sums(own_counts)
    first = recorder.first if recorder else {}
    same_as = _same_as(built, first)
    sources = recorder.traced_sources() if built.graph is None and recorder else _sources(built)
    rows = []
    for path, module in modules:
        entry = built.entries.get(path)
        call = first.get(path)
        status: RowStatus = "failed" if path in failed else "ok" if call else "not-run"
        type_name = type(module).__name__
        if entry is not None:
            type_name = entry.display_type
            if isinstance(module, own.Ref) and entry.repeat is None:
                type_name = f"Ref → {module.path}"
        rows.append(
            Row(
                path=path,
                name=path.rsplit(".", 1)[-1] if path else name,
                type=type_name,
                depth=path.count(".") + 1 if path else 0,
                source=entry.source if entry else None,
                input_shapes=tuple(i.shape for i in call.inputs) if call else (),
                output_shapes=tuple(o.shape for o in call.outputs or ()) if call else (),
                params=infos[path],
                param_count=subtree[path],
                flops=call.flops if call is not None else None,
                entry=entry is not None,
                inferred=path in built.lazy,
                status=status,
                same_as=same_as.get(path),
                repeat=entry.repeat if entry is not None else None,
                sources=_expand(sources.get(path, ()), inputs),
            )
        )
    return rows, _totals(built, modules, found, recorder)


def _sources(built: BuiltModel) -> dict[str, tuple[Origin, ...]]:
    """Each entry's sources: the edges of the spec's graph."""
    if built.graph is None:
        return {}
    return {path: ir.sources(node) for path, node in built.graph.calls.items()}


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
    root = recorder.first.get("") if recorder else None
    return Totals(
        params=total,
        trainable=trainable,
        non_trainable=total - trainable,
        shared=sum(p.numel() for i, p in found.unique.items() if found.uses[i] > 1),
        param_bytes=sum(p.numel() * p.element_size() for p in unique),
        activation_bytes=_activation_bytes(built, recorder) if recorder else 0,
        flops=root.flops if root is not None else None,
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
            call = first.get(join(path, str(i)))
            if (
                call is not None
                and call.outputs is not None
                and call.inputs == call0.inputs
                and call.outputs == call0.outputs
            ):
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


def _activation_bytes(built: BuiltModel, recorder: Recorder) -> int:
    """Bytes of what every leaf module returned in one forward pass (a ``Ref`` is a
    leaf of its own, so a reuse counts again)."""
    total = 0
    for path, module in built.model.named_modules():
        call = recorder.first.get(path)
        if call is not None and call.outputs and not any(True for _ in module.children()):
            total += sum(o.nbytes for o in call.outputs)
    return total
