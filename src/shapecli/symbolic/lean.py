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
4. **Attention.** torch's attention kernel on symbolic sizes reshapes into heads and
   back and builds its softmax step by step: 40 % of Swin-T's symbolic run and half
   of GPT-2's, to learn that shapecli's ``Attention`` gives (B, T, dim) from B×T×dim.
   Where no context, mask or rotary embedding is given and the feature size is a
   number, its projections run as they would (their rows need their shapes) and the
   output projection is given the attention's (B, T, heads·head_dim) shape; a bias
   must fit the scores with numbers alone (see :func:`attention`).
5. **The first subclass dispatch.** torch's fake slice and view (with symbolic sizes)
   call operations on a fake tensor from inside the fake mode, which go through the
   tensor subclass's own dispatch; its first use imports ``torch.distributed.tensor``
   (0.3 s) to ask whether the tensor is a distributed one. ``PositionalEmbedding``
   slices its table by the symbolic T, ``Flatten`` is a view: their rules give their
   shapes (the positional table's checks the layer's own bound on T, so torch records
   it as the layer would), and a model with no other slice or view never pays it.

All of it lasts only for the run: on leaving, every layer's ``forward`` and torch's
list are as they were. A torch release that renames what is replaced here gets none
of it, and the run is only slower.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
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


def attention(
    module: Any,
    x: Any,
    context: Any = None,
    mask: Any = None,
    bias: Any = None,
) -> torch.Tensor | None:
    """shapecli's ``Attention`` over one sequence: its projections run as they would
    (their rows need their shapes), and their attention is a (B, T, heads·head_dim)
    tensor for the output projection. With no context, mask or rotary embedding, q, k
    and v are the projections of one B×T×dim input, of widths set by the layer's own
    sizes: splitting them into heads and attending reads no size but those numbers, at
    any B and T. A bias must be a number-sized (…, heads, T, T) that broadcasts, T a
    number: the layer's own check, made here with numbers only. Anything else (a
    symbolic feature size, a context, a mask) goes to the layer."""
    if context is not None or mask is not None or getattr(module, "rope_theta", None) is not None:
        return None
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return None
    b, t, features = x.shape
    if not isinstance(features, int) or features != module.dim:
        return None
    if bias is not None and not _fits_scores(bias, module.heads, t):
        return None
    if hasattr(module, "qkv"):
        module.qkv(x)
    else:
        for projection in (module.q, module.k, module.v):
            projection(x)
    merged: torch.Tensor = module.o(x.new_empty((b, t, module.heads * module.head_dim)))
    return merged


def _fits_scores(bias: Any, heads: int, t: Any) -> bool:
    """Whether ``bias`` is number-sized and broadcasts to (B, heads, t, t) for any B."""
    if not isinstance(bias, torch.Tensor) or not isinstance(t, int):
        return False
    shape = tuple(bias.shape)
    if not all(isinstance(d, int) for d in shape) or not 1 <= len(shape) <= 4:
        return False
    full = (1,) * (4 - len(shape)) + shape
    return full[0] == 1 and all(
        d in (1, want) for d, want in zip(full[1:], (heads, t, t), strict=True)
    )


def _flattened(module: Any, x: Any) -> torch.Tensor | None:
    """``nn.Flatten``: the sizes from ``start_dim`` to ``end_dim`` as their product. A
    view with symbolic sizes is the first operation to reach a tensor subclass's own
    dispatch in torch's fake mode (see the module docstring). Dimensions
    out of range, or in the wrong order, go to the layer (its own error); one
    dimension alone is the input as it is, which the layer gives at no cost."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    n = x.dim()
    start, end = module.start_dim, module.end_dim
    if not (-n <= start < n and -n <= end < n) or start % n >= end % n:
        return None
    start, end = start % n, end % n
    shape = tuple(x.shape)
    return x.new_empty((*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]))


def _positions(module: Any, x: Any) -> torch.Tensor | None:
    """shapecli's ``PositionalEmbedding``: ``x`` plus the first T rows of its table
    has ``x``'s shape. The layer's own condition, T at most the table's rows past the
    offset, is checked on the symbolic T (so torch records it as the layer would); the
    slice of the table by a symbolic T is what is skipped (its first use imports
    torch's distributed tensors, 0.3 s)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return None
    positions, dim = module.weight.shape
    if not isinstance(x.shape[-1], int) or x.shape[-1] != dim:
        return None
    if x.shape[1] > positions - module.offset:
        return None
    return x.new_empty(x.shape, dtype=torch.result_type(x, module.weight))


def _shape_rules() -> dict[type[nn.Module], Callable[..., torch.Tensor | None]]:
    from shapecli.layers import own

    return {
        own.WindowPartition: _windows,
        own.WindowMerge: _merged,
        nn.PixelUnshuffle: _unshuffled,
        nn.PixelShuffle: _shuffled,
        nn.Linear: _linear,
        nn.Flatten: _flattened,
        own.Attention: attention,
        own.PositionalEmbedding: _positions,
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
            module.forward = by_rule(module, module.forward, rule)
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


def by_rule(
    module: nn.Module, forward: Callable[..., Any], rule: Callable[..., torch.Tensor | None]
) -> Callable[..., Any]:
    """``forward``, except where ``rule`` answers (a tensor, not None)."""

    def shortcut(*args: Any, **kwargs: Any) -> Any:
        made = rule(module, *args, **kwargs) if kwargs.keys() <= _keywords(rule) else None
        return forward(*args, **kwargs) if made is None else made

    return shortcut


@functools.cache
def _keywords(rule: Callable[..., Any]) -> frozenset[str]:
    """The arguments ``rule`` takes by name (after the module): a layer called with
    others (``in: {x: …, context: …}``) goes to the layer."""
    return frozenset(list(inspect.signature(rule).parameters)[1:])


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
