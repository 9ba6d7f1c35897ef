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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import cast

import torch
from torch import nn

from shapecli.errors import Problem, ShapecliError
from shapecli.layers import own
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


def initialize(
    model: nn.Module, entries: Mapping[str, Entry], scheme: str = "default", seed: int = 0
) -> None:
    """Set every parameter and buffer of ``model`` (see the module docstring)."""
    mark_unset(model)
    state = torch.random.get_rng_state()
    torch.default_generator.manual_seed(seed)  # the CPU's: the one initializers draw from
    try:
        with torch.no_grad():
            for module in _children_first(model):
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
    if reset is None and type(module).__module__.startswith("torch.nn."):
        reset = getattr(module, "_reset_parameters", None)  # MultiheadAttention, Transformer
    if callable(reset):
        cast(Callable[[], None], reset)()
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.reset_running_stats()


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
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
            elif tensor.dtype == torch.bool:
                tensor.fill_(False)
            elif not tensor.is_complex():
                tensor.fill_(torch.iinfo(tensor.dtype).min)


def unset(model: nn.Module) -> list[str]:
    """The names of the tensors that still hold the marker of :func:`mark_unset`."""
    found = []
    with torch.no_grad():
        for name, tensor in _tensors(model):
            if tensor.is_floating_point():
                # A sum is NaN when any element is, and reads the tensor once without
                # allocating a mask as large as it; only then is the mask worth making
                # (inf - inf is NaN too).
                marked = bool(torch.isnan(tensor.sum())) and bool(torch.isnan(tensor).any())
            elif tensor.dtype == torch.bool or tensor.is_complex():
                marked = False
            else:
                marked = bool((tensor == torch.iinfo(tensor.dtype).min).any())
            if marked:
                found.append(name)
    return found


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
