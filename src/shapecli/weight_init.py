"""Fill freshly allocated weights: every tensor set, the same way every time.

``to_empty`` gives parameters and buffers memory but no values, so everything a layer
set in its constructor on the meta device has to be set again. Three rules:

* **Each layer's own initializer first**, children before parents — the order in which
  constructing the model on the CPU would have run them, so a spec of plain layers
  built with seed *s* equals the same layers written in PyTorch after
  ``torch.manual_seed(s)``. That is ``reset_parameters`` (and for torch's
  ``MultiheadAttention`` and ``Transformer``, which have none, their private
  ``_reset_parameters``).
* **Then the scheme** (``init:``, ``--init``): for every weight of two or more
  dimensions, the scheme of the nearest entry that names one, else the model's. A tied
  weight is one tensor held by several entries (where it is defined, and each ``tie:``):
  the scheme any of them names is its scheme, and two different ones are an error. A
  ``Param`` keeps its own ``init`` argument unless its own entry names a scheme.
* **Nothing left unset**: before initializing, every float tensor is filled with NaN
  and every integer tensor with its type's minimum; a tensor that still holds the marker
  afterwards was set by no initializer (a user layer without ``reset_parameters``, a
  buffer computed in a constructor), and the build says which instead of handing over
  whatever the allocator left there.

The global random state is seeded for the work and restored after it, so a program
that builds a model sees its own random sequence unchanged.

**Module by module, each touching only its own tensors.** That is the contract of
torch's FSDP: after ``fully_shard`` and ``to_empty`` a parameter is a DTensor of which
each process holds a shard, and a layer's initializer runs on it as on a plain tensor.
DTensor's random operations match a single process's only on CUDA (and there with
CUDA's generator); on the CPU each process would draw its shard from the start of its
own random sequence, so every shard would hold the same numbers. So a tensor that is
a DTensor, or that lives on another device than the CPU, is given to its layer's
initializer as a full CPU tensor (a *stand-in*, one layer's tensors at a time), drawn
from the CPU's generator exactly as for a plain model, and then each process keeps its
own shard of it (:func:`torch.distributed.tensor.distribute_tensor` with no
communication: every process computed the same full tensor). A sharded model is so
initialized bit for bit as the same spec built in one process. An initializer that
reaches a sharded tensor of another layer (torch's ``MultiheadAttention`` sets its
``out_proj.bias``) is noticed before it changes anything, and runs again with its whole
subtree as stand-ins (gathered from the shards).

:func:`remember` keeps, for each model :func:`shapecli.build` makes, what initializing
it needs from its spec (the entries' ``init:`` and the ties), in a table that holds
the model weakly, as torch's composable APIs keep their state; so
:func:`initialize_again` can initialize the model after it was sharded and
materialized.

(The module is not called ``initialize``: once imported, a submodule
``shapecli.initialize`` would replace the public function ``shapecli.initialize``.)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from shapecli.construct import BuiltModel, Tie
from shapecli.errors import Problem, ShapecliError, fail
from shapecli.layers import own
from shapecli.memory import swapped
from shapecli.record import tensors_in
from shapecli.spec.model import INIT_SCHEMES, Entry, at_or_above

#: The schemes as ``torch.nn.init`` functions (``default`` is no function: it is each
#: layer's own initializer).
SCHEMES: dict[str, Callable[[torch.Tensor], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "orthogonal": nn.init.orthogonal_,
    "normal": lambda t: nn.init.normal_(t, std=0.02),  # GPT-2's
}
assert ("default", *SCHEMES) == INIT_SCHEMES, "the spec and the initializer disagree on schemes"


@dataclass(frozen=True)
class Plan:
    """What initializing a model needs from its spec: every entry (its ``init:`` and
    source), the ties, and the model-wide scheme it was built with. It holds no module,
    so the table of plans never keeps a model alive."""

    entries: Mapping[str, Entry]
    ties: tuple[Tie, ...]
    scheme: str


_PLANS: weakref.WeakKeyDictionary[nn.Module, Plan] = weakref.WeakKeyDictionary()


def remember(built: BuiltModel, scheme: str) -> None:
    """Keep what :func:`initialize_again` needs to initialize ``built.model``."""
    _PLANS[built.model] = Plan(dict(built.entries), tuple(built.ties), scheme)


def initialize_again(model: nn.Module, scheme: str | None = None, seed: int = 0) -> None:
    """Initialize a model :func:`shapecli.build` made, wherever its tensors are now:
    sharded and materialized (``fully_shard``, ``to_empty``), or on any device, or
    already initialized once. Ties broken by ``to_empty`` on plain tensors are tied
    again; every tensor must end up set (``no-initializer``)."""
    plan = _PLANS.get(model)
    if plan is None:
        raise fail(
            "usage",
            "initialize() needs a model that shapecli.build made (it holds the spec's "
            "`init:` schemes and ties); this one was not, or is a copy of one",
            hint='build it with shapecli.build(spec, device="meta"), shard it, then initialize it',
        )
    on_meta = next((n for n, t in _tensors(model) if t.is_meta), None)
    if on_meta is not None:
        raise fail(
            "usage",
            f"initialize(): `{on_meta}` is still on the meta device, with no memory to set",
            hint='give the model memory first: model.to_empty(device="cpu") (or "cuda")',
        )
    _tie(model, plan)
    initialize(model, plan.entries, scheme or plan.scheme, seed)
    check_all_set(model, plan.entries)


def _tie(model: nn.Module, plan: Plan) -> None:
    """Tie again what ``to_empty`` untied (it gives each holder of a plain tensor its
    own); a sharded model keeps its ties (torch swaps DTensor parameters in place),
    and one that lost them cannot be tied again behind FSDP's back."""
    built = BuiltModel(model, dict(plan.entries), ties=list(plan.ties))
    broken = [
        tie
        for tie in plan.ties
        if model.get_submodule(tie.path)._parameters.get(tie.param)
        is not model.get_parameter(tie.target)
    ]
    if not broken:
        return
    if any(_is_dtensor(t) for _, t in _tensors(model)):
        tie = broken[0]
        raise fail(
            "usage",
            f"initialize(): `{tie.path}.{tie.param}` is no longer `{tie.target}`: the tie "
            "was broken before the model was sharded",
            source=tie.source,
            hint="shard a model as shapecli.build made it: ties are kept by fully_shard "
            "and to_empty",
        )
    built.apply_ties()


def initialize(
    model: nn.Module, entries: Mapping[str, Entry], scheme: str = "default", seed: int = 0
) -> None:
    """Set every parameter and buffer of ``model`` (see the module docstring)."""
    mark_unset(model)
    sharded = any(_stands_in(t) for _, t in _tensors(model))
    state = torch.random.get_rng_state()
    torch.default_generator.manual_seed(seed)  # the CPU's: the one initializers draw from
    try:
        with torch.no_grad():
            seen: set[int] = set()
            where = {id(m): n for n, m in reversed(list(model.named_modules()))}
            for module in _children_first(model):
                if sharded:
                    _reset_in_stand_ins(module, seen, where[id(module)], entries)
                else:
                    _reset(module)
            modules = dict(model.named_modules())
            for names, param in _tensors_by_names(model):  # each tied parameter once
                paths = [name.rpartition(".")[0] for name in names]
                chosen = _tensor_scheme(names, entries, scheme)
                if param.dim() < 2 or chosen == "default":
                    continue
                named_here = any((e := entries.get(p)) is not None and e.init for p in paths)
                if isinstance(modules[paths[0]], own.Param) and not named_here:
                    continue  # a Param says how it starts
                if _stands_in(param):
                    full = _stand_in(param, fresh=True)
                    _apply(SCHEMES[chosen], full)
                    _write_back(param, full)
                else:
                    _apply(SCHEMES[chosen], param)
    finally:
        torch.random.set_rng_state(state)


def _tensors_by_names(model: nn.Module) -> list[tuple[list[str], nn.Parameter]]:
    """Every parameter once, in ``named_parameters`` order, with all of its names: a
    tied parameter is registered where it is defined and at every layer tied to it."""
    names: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
        params.setdefault(id(param), param)
    return [(names[key], params[key]) for key in params]


def _tensor_scheme(names: list[str], entries: Mapping[str, Entry], scheme: str) -> str:
    """The scheme for one tensor registered under ``names`` (several when it is tied):
    the one an entry at or above its layers names, else ``scheme``. A tied tensor is
    one tensor, so two entries that name different schemes for it are an error, at the
    second. An entry that names one sets it from either end of a tie."""
    named: dict[str, Entry] = {}
    for name in names:
        entry = _naming_entry(name.rpartition(".")[0], entries)
        if entry is not None and entry.init is not None:
            named.setdefault(entry.init, entry)
    if len(named) > 1:
        (first, one), (second, other) = list(named.items())[:2]
        raise ShapecliError(
            Problem(
                code="spec-invalid",
                message=f"`init: {second}` here and `init: {first}` at line "
                f"{one.source.line} name different schemes for one tied tensor, "
                f"{' = '.join(f'`{n}`' for n in names)}, which is initialized once",
                source=other.source,
                hint="name the scheme on one of them only",
            )
        )
    return next(iter(named), scheme)


def _naming_entry(path: str, entries: Mapping[str, Entry]) -> Entry | None:
    """The nearest entry at or above ``path`` that names a scheme, if any."""
    while True:
        entry = entries.get(path)
        if entry is not None and entry.init is not None:
            return entry
        if not path:
            return None
        path = path.rpartition(".")[0]


def _children_first(model: nn.Module) -> Iterator[nn.Module]:
    """Every module once, each after all of its submodules."""
    seen: set[int] = set()

    def visit(module: nn.Module) -> Iterator[nn.Module]:
        if id(module) in seen:
            return
        seen.add(id(module))
        for child in module.children():
            yield from visit(child)
        yield module

    return visit(model)


def _reset(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if reset is None and _torch_private_reset(module):
        reset = getattr(module, "_reset_parameters", None)  # MultiheadAttention, Transformer
    if callable(reset):
        cast(Callable[[], None], reset)()
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.reset_running_stats()


def _torch_private_reset(module: nn.Module) -> bool:
    """Whether the module's ``_reset_parameters`` is torch's own (``fully_shard`` gives
    a module a class of its own, so the class that defines it is the one to ask)."""
    owner = next((c for c in type(module).__mro__ if "_reset_parameters" in vars(c)), None)
    return owner is not None and owner.__module__.startswith("torch.nn.")


# -- stand-ins for sharded tensors and tensors on other devices --------------------------


class _ReachedOut(Exception):
    """An initializer touched a tensor that needs a stand-in and has none."""


class _OwnTensorsOnly(TorchFunctionMode):
    """Stops an initializer at the first torch call that reads or writes a DTensor or a
    tensor on another device: inside it, the layer's own tensors are CPU stand-ins, so
    such a tensor is another layer's."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if any(_stands_in(t) for t in tensors_in((args, kwargs))):
            raise _ReachedOut
        return func(*args, **(kwargs or {}))


def _reset_in_stand_ins(
    module: nn.Module, seen: set[int], path: str, entries: Mapping[str, Entry]
) -> None:
    """``_reset(module)`` with its own tensors as full CPU stand-ins, each process then
    keeping its shard. One that reaches other layers' sharded tensors runs again, from
    the same random state, with its whole subtree as stand-ins."""
    state = torch.random.get_rng_state()
    for recurse in (False, True):
        tensors = [t for t in _own(module, recurse) if _stands_in(t)]
        try:
            with _in_stand_ins(module, tensors, seen), _OwnTensorsOnly():
                _reset(module)
            return
        except _ReachedOut:
            torch.random.set_rng_state(state)
    raise ShapecliError(_reaches_out(module, path, entries))


def _reaches_out(module: nn.Module, path: str, entries: Mapping[str, Entry]) -> Problem:
    kind = next(c for c in type(module).__mro__ if not c.__module__.startswith("torch.distrib"))
    entry = at_or_above(path, entries)
    return Problem(
        code="no-initializer",
        message=f"cannot initialize layer {path or '(model)'} ({kind.__name__}): its "
        "initializer sets tensors of layers outside it, which are sharded or on another device",
        source=entry.source if entry else None,
        path=path,
        layer_type=kind.__name__,
        hint="give the layer a reset_parameters() that sets only its own tensors",
    )


def _own(module: nn.Module, recurse: bool) -> list[torch.Tensor]:
    """The module's parameters and buffers (its subtree's with ``recurse``), each once."""
    found = {id(t): t for t in [*module.parameters(recurse), *module.buffers(recurse)]}
    return list(found.values())


@contextlib.contextmanager
def _in_stand_ins(module: nn.Module, tensors: list[torch.Tensor], seen: set[int]) -> Iterator[None]:
    """Within the block the module holds a full CPU stand-in for each of ``tensors``:
    a new one, marked unset, for a tensor met for the first time; otherwise its
    current values (gathered from the shards). Leaving the block normally, each tensor
    takes its part of its stand-in."""
    stand_ins = {id(t): _stand_in(t, fresh=id(t) not in seen) for t in tensors}
    with swapped(module, stand_ins):
        yield
    for tensor in tensors:
        _write_back(tensor, stand_ins[id(tensor)])
        seen.add(id(tensor))


def _is_dtensor(value: object) -> bool:
    """Whether ``value`` is a DTensor (none can exist before torch.distributed.tensor
    is imported, so a plain build does not import it)."""
    dtensor = sys.modules.get("torch.distributed.tensor")
    return dtensor is not None and isinstance(value, dtensor.DTensor)


def _stands_in(tensor: torch.Tensor) -> bool:
    """Whether initializing ``tensor`` goes through a full CPU stand-in."""
    return _is_dtensor(tensor) or tensor.device.type != "cpu"


def _stand_in(tensor: torch.Tensor, fresh: bool) -> torch.Tensor:
    """A full CPU tensor of ``tensor``'s shape and dtype (a Parameter for a Parameter):
    marked unset when ``fresh``, else holding its values."""
    if fresh:
        full = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device="cpu")
        _mark(full)
    else:
        whole = cast(Any, tensor).full_tensor() if _is_dtensor(tensor) else tensor
        full = whole.detach().to("cpu", copy=True)
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(full, requires_grad=tensor.requires_grad)
    return full


def _write_back(tensor: torch.Tensor, full: torch.Tensor) -> None:
    """Set ``tensor`` from its full stand-in: a DTensor takes its own shard (every
    process holds the same full tensor), another its whole."""
    if not _is_dtensor(tensor):
        tensor.copy_(full)
        return
    from torch.distributed.tensor import distribute_tensor

    sharded: Any = tensor
    part = distribute_tensor(
        full.detach().to(sharded.device),
        sharded.device_mesh,
        sharded.placements,
        **_cut_locally(),
    )
    sharded.to_local().copy_(part.to_local())


@functools.cache
def _cut_locally() -> dict[str, Any]:
    """``distribute_tensor``'s arguments for each process to cut its shard from its own
    copy, so none is sent: ``src_data_rank=None``, from torch 2.7. Before it, the shards
    come from rank 0's copy, which is the same tensor."""
    from torch.distributed.tensor import distribute_tensor

    has = "src_data_rank" in inspect.signature(distribute_tensor).parameters
    return {"src_data_rank": None} if has else {}


def _apply(scheme: Callable[[torch.Tensor], object], param: torch.Tensor) -> None:
    """The scheme in float32 or float64; half precisions get the float32 values rounded
    (torch's QR, which ``orthogonal`` needs, has no half-precision CPU kernel)."""
    if param.dtype in (torch.float32, torch.float64):
        scheme(param)
    else:
        full = torch.empty_like(param, dtype=torch.float32)
        scheme(full)
        param.copy_(full)


# -- the marker for "set by nobody" -------------------------------------------------------


def _tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def mark_unset(model: nn.Module) -> None:
    """Fill every tensor with the value no initializer writes: NaN, or an integer type's
    minimum (booleans get False: they have no spare value)."""
    with torch.no_grad():
        for _, tensor in _tensors(model):
            _mark(tensor)


def _mark(tensor: torch.Tensor) -> None:
    if tensor.is_floating_point():
        tensor.fill_(float("nan"))
    elif tensor.dtype == torch.bool:
        tensor.fill_(False)
    elif not tensor.is_complex():
        tensor.fill_(torch.iinfo(tensor.dtype).min)


def unset(model: nn.Module) -> list[str]:
    """The names of the tensors that still hold the marker of :func:`mark_unset`. A
    sharded tensor is asked of every process that holds a shard of it (a collective
    call, in the same order on each), so all of them give the same answer."""
    found = []
    with torch.no_grad():
        for name, tensor in _tensors(model):
            if _is_dtensor(tensor):
                local = cast(Any, tensor).to_local()
                if _anywhere(_marked(local), cast(Any, tensor).device_mesh, local.device):
                    found.append(name)
            elif _marked(tensor):
                found.append(name)
    return found


def _marked(tensor: torch.Tensor) -> bool:
    if tensor.is_floating_point():
        # A sum is NaN when any element is, and reads the tensor once without
        # allocating a mask as large as it; only then is the mask worth making
        # (inf - inf is NaN too).
        return bool(torch.isnan(tensor.sum())) and bool(torch.isnan(tensor).any())
    if tensor.dtype == torch.bool or tensor.is_complex():
        return False
    return bool((tensor == torch.iinfo(tensor.dtype).min).any())


def _anywhere(here: bool, mesh: Any, device: torch.device) -> bool:
    """Whether ``here`` is true on any process of ``mesh``."""
    import torch.distributed as dist

    flag = torch.tensor([int(here)], device=device)
    for dim in range(mesh.ndim):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
    return bool(flag.item())


def check_all_set(model: nn.Module, entries: Mapping[str, Entry]) -> None:
    """Raise ``no-initializer`` when a tensor was set by no initializer."""
    names = unset(model)
    if not names:
        return
    first = names[0]
    path = first.rpartition(".")[0]
    module = model.get_submodule(path)
    entry = at_or_above(path, entries)
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    raise ShapecliError(
        Problem(
            code="no-initializer",
            message=f"cannot make real weights: `{first}`{more} of layer {path or '(model)'} "
            f"({type(module).__name__}) is set by no initializer",
            source=entry.source if entry else None,
            path=path,
            layer_type=type(module).__name__,
            hint="a layer must set its parameters and buffers in reset_parameters(); "
            "values set in the constructor are lost on the meta device",
        )
    )
