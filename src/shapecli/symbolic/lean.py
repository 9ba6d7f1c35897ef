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
   names. During the run that list is made of the torch modules already imported
   (:func:`~shapecli.torch_compat.shape_env.uninteresting_files_known`, also around
   every other place symbols are made): the frame found only labels torch's own debug
   messages.

3. **Reshapes.** A ``view`` with symbolic sizes makes torch prove that the element
   counts match, by sympy simplification of nested floor divisions: each
   ``WindowPartition``, ``WindowMerge`` and ``PixelUnshuffle`` of Swin-T took 1-2 s,
   and each ``Linear`` over a B×H×W×C map 60 ms (it folds the leading sizes into one).
   Their shapes follow from their input's by one formula each, under the conditions
   their own ``forward`` checks (H and W multiples of the window): :data:`SHAPE_RULES`
   check those same conditions on the symbolic sizes (so torch records them as it
   would) and return an empty tensor of that shape. Any input the rule is not sure of
   (another rank, a condition that fails) goes to the layer itself.

All of it lasts only for the run: on leaving, every layer's ``forward`` and torch's
list are as they were. A torch release that renames what is replaced here gets none
of it, and the run is only slower.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from shapecli.torch_compat.shape_env import uninteresting_files_known

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


def _windows(module: Any, x: Any) -> torch.Tensor | None:
    s = module.size
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return None
    b, h, w, c = x.shape
    if h % s != 0 or w % s != 0:
        return None
    return x.new_empty((b * (h // s) * (w // s), s * s, c))


def _merged(module: Any, windows: Any, like: Any) -> torch.Tensor | None:
    s = module.size
    if not isinstance(windows, torch.Tensor) or not isinstance(like, torch.Tensor):
        return None
    if like.dim() != 4 or windows.dim() != 3:
        return None
    b, h, w, _ = like.shape
    if h % s != 0 or w % s != 0:  # what the view back into the map needs
        return None
    if windows.shape[0] != b * (h // s) * (w // s) or windows.shape[1] != s * s:
        return None
    return windows.new_empty((b, h, w, windows.shape[-1]))


def _unshuffled(module: Any, x: Any) -> torch.Tensor | None:
    r = module.downscale_factor
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return None
    *rest, c, h, w = x.shape
    if h % r != 0 or w % r != 0:
        return None
    return x.new_empty((*rest, c * r * r, h // r, w // r))


def _shuffled(module: Any, x: Any) -> torch.Tensor | None:
    r = module.upscale_factor
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return None
    *rest, c, h, w = x.shape
    if c % (r * r) != 0:
        return None
    return x.new_empty((*rest, c // (r * r), h * r, w * r))


def _linear(module: Any, x: Any) -> torch.Tensor | None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != module.in_features:
        return None
    return x.new_empty((*x.shape[:-1], module.out_features))


def _shape_rules() -> dict[type[nn.Module], Callable[..., torch.Tensor | None]]:
    from shapecli.layers import own

    return {
        own.WindowPartition: _windows,
        own.WindowMerge: _merged,
        nn.PixelUnshuffle: _unshuffled,
        nn.PixelShuffle: _shuffled,
        nn.Linear: _linear,
    }


@contextlib.contextmanager
def lean_symbolic(model: nn.Module) -> Iterator[None]:
    """The block torch's symbolic run of ``model`` runs in (see the module docstring)."""
    with _shape_keepers_skipped(model), uninteresting_files_known():
        yield


@contextlib.contextmanager
def _shape_keepers_skipped(model: nn.Module) -> Iterator[None]:
    from shapecli.layers import own

    patched = []
    rules = _shape_rules()
    keepers = {**SHAPE_KEEPERS, own.Roll: ()}  # a cyclic shift: the same shape
    for module in model.modules():
        if "forward" in vars(module):
            continue  # someone else's (a replayed copy): left alone
        reads = keepers.get(type(module))
        rule = rules.get(type(module))
        if reads is not None:
            module.forward = _kept_shape(module, module.forward, reads)
            patched.append(module)
        elif rule is not None:
            module.forward = _by_rule(module, module.forward, rule)
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


def _by_rule(
    module: nn.Module, forward: Callable[..., Any], rule: Callable[..., torch.Tensor | None]
) -> Callable[..., Any]:
    def shortcut(*args: Any, **kwargs: Any) -> Any:
        made = None if kwargs else rule(module, *args)
        return forward(*args, **kwargs) if made is None else made

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
