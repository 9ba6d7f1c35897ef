"""Measured costs of torch's symbolic run, and how shapecli avoids them without
changing a formula (every formula is checked by concrete runs afterwards anyway).

1. **Shape-keeping layers run in full.** On fake tensors with symbolic sizes every
   elementwise step of a layer is a round of sympy arithmetic: ResNet-18's BatchNorms
   and ReLUs were 60 % of its symbolic run, to learn that their output has their
   input's shape. For the layers listed in :data:`SHAPE_KEEPERS` — whose output has
   the input's shape at every size they accept, and which read no size of it but the
   ones listed (a BatchNorm the channels) — the call becomes an empty tensor of the
   input's shape, when those sizes are numbers, as they were in the concrete run that
   worked at the samples. A call with a symbolic size there, or any other argument,
   runs in full.
2. **torch's guard bookkeeping imports a compiler.** The ``ShapeEnv`` names the user
   frame of each symbol it makes from a list of "uninteresting" files, whose first use
   imports ``torch._inductor`` and ``torch.export`` (0.7 s) only to read their file
   names. During the run that list is made of the torch modules already imported:
   the frame found only labels torch's own debug messages.

Both last only for the run: on leaving, every layer's ``forward`` and torch's list
are as they were. A torch release that renames what is replaced here gets neither
change, and the run is only slower.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

#: Layers whose output has their input's shape, and the dimensions of it they read
#: (from the end when negative; "norm" the last ``len(normalized_shape)``).
SHAPE_KEEPERS: dict[type[nn.Module], tuple[int, ...] | str] = {
    **dict.fromkeys(
        (
            nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
            nn.SELU, nn.CELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus,
            nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
        ),
        (),
    ),
    **dict.fromkeys(
        (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.PReLU), (1,)
    ),
    **dict.fromkeys((nn.LayerNorm, nn.RMSNorm), "norm"),
}  # fmt: skip


@contextlib.contextmanager
def lean_symbolic(model: nn.Module) -> Iterator[None]:
    """The block torch's symbolic run of ``model`` runs in (see the module docstring)."""
    with _shape_keepers_skipped(model), _uninteresting_files_known():
        yield


@contextlib.contextmanager
def _shape_keepers_skipped(model: nn.Module) -> Iterator[None]:
    patched = []
    for module in model.modules():
        reads = SHAPE_KEEPERS.get(type(module))
        if reads is not None and "forward" not in vars(module):
            module.forward = _kept_shape(module, module.forward, reads)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            vars(module).pop("forward", None)


def _kept_shape(
    module: nn.Module, forward: Callable[..., Any], reads: tuple[int, ...] | str
) -> Callable[..., Any]:
    def shortcut(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if not isinstance(x, torch.Tensor) or module.training or not _numbers(module, x, reads):
            return forward(*args, **kwargs)
        return torch.empty_like(x)

    return shortcut


def _numbers(module: nn.Module, x: torch.Tensor, reads: tuple[int, ...] | str) -> bool:
    """Whether every size of ``x`` the module reads is a number (not symbolic)."""
    if reads == "norm":
        count = len(getattr(module, "normalized_shape", ()) or ())
        dims: tuple[int, ...] = tuple(range(-count, 0))
    else:
        dims = reads  # type: ignore[assignment]
    if any(d >= x.dim() or d < -x.dim() for d in dims):
        return False  # the layer's own check says what is wrong
    return all(isinstance(x.shape[d], int) for d in dims)


@contextlib.contextmanager
def _uninteresting_files_known() -> Iterator[None]:
    from torch.fx.experimental import symbolic_shapes

    original = getattr(symbolic_shapes, "uninteresting_files", None)
    if not callable(original) or getattr(original, "cache_info", None) is None:
        yield  # not the function this knows: leave it
        return
    if original.cache_info().currsize:
        yield  # already paid for: torch's own list is there
        return
    known = frozenset(
        getattr(module, "__file__", None) or ""
        for name, module in list(sys.modules.items())
        if name.startswith("torch.")
    )
    symbolic_shapes.uninteresting_files = lambda: known  # type: ignore[assignment]
    try:
        yield
    finally:
        symbolic_shapes.uninteresting_files = original
