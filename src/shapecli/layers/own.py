"""shapecli's own layers: the small set that turns lists of torch.nn layers into real
architectures (residual blocks, branches, attention, tokens and positions).

Each is an ordinary ``nn.Module`` with a typed ``__init__``, so the same signature
checks apply to them as to ``torch.nn`` classes, and a model built from a spec is plain
PyTorch. When a layer cannot take its input it raises :class:`LayerInputError`, whose
``expected`` the dry run reports in the layer's own terms.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from shapecli.report import format_shape

Merge = Literal["cat", "add", "mul", "stack", "tuple"]


class LayerInputError(ValueError):
    """A layer of ours cannot take its input; ``expected`` says what it needed."""

    def __init__(self, message: str, expected: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.hint = hint


def _shape(t: torch.Tensor) -> str:
    return format_shape(tuple(t.shape))


def _tensor(x: object, layer: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise LayerInputError(
            f"{layer} got a {type(x).__name__}, not a tensor",
            "a tensor",
            "after a layer that returns a tuple (LSTM, MultiheadAttention) add `Take: 0`",
        )
    return x


class Sequential(nn.Sequential):
    """A layer list, in order. Children are named by the spec (default: their index)."""


class Residual(nn.Module):
    """``shortcut(x) + body(x)``; without a shortcut, ``x + body(x)``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _tensor(self.body(x), "Residual body")
        skip = x if self.shortcut is None else _tensor(self.shortcut(x), "Residual shortcut")
        if out.shape != skip.shape:
            what = "its input" if self.shortcut is None else "the shortcut's output"
            raise LayerInputError(
                f"the body's output {_shape(out)} cannot be added to {what} {_shape(skip)}",
                f"the body to keep the shape {_shape(skip)}",
                "add a `shortcut:` that maps the input to the body's output shape"
                if self.shortcut is None
                else "make the shortcut produce the body's output shape",
            )
        return skip + out


class Parallel(nn.Module):
    """Run every branch on the same input and merge the results."""

    def __init__(self, branches: nn.ModuleList, merge: Merge = "cat", dim: int = 1) -> None:
        super().__init__()
        if len(branches) < 1:
            raise ValueError("Parallel needs at least one branch")
        self.branches = branches
        self.merge = merge
        self.dim = dim

    def forward(self, x: torch.Tensor) -> Any:
        outs = [
            _tensor(branch(x), f"Parallel branch {i}") for i, branch in enumerate(self.branches)
        ]
        if self.merge == "tuple":
            return tuple(outs)
        shapes = ", ".join(_shape(o) for o in outs)
        if self.merge in ("add", "mul", "stack") and len({o.shape for o in outs}) > 1:
            raise LayerInputError(
                f"branches returned {shapes}; `merge: {self.merge}` needs equal shapes",
                "every branch to return the same shape",
            )
        if self.merge == "cat":
            try:
                return torch.cat(outs, dim=self.dim)
            except (RuntimeError, IndexError) as e:
                raise LayerInputError(
                    f"branches returned {shapes}; they cannot be joined along dim {self.dim}",
                    f"equal shapes except in dim {self.dim}",
                ) from e
        if self.merge == "stack":
            return torch.stack(outs, dim=self.dim)
        result = outs[0]
        for o in outs[1:]:
            result = result + o if self.merge == "add" else result * o
        return result


class Ref(nn.Module):
    """The module at another path, used again: the same instance, the same weights.

    The target is a child too (as in any PyTorch model that reuses a module), so it is
    counted once and its parameters appear here as shared.
    """

    def __init__(self, target: str) -> None:
        super().__init__()
        self.path = target
        self.target: nn.Module | None = None

    def forward(self, *args: Any) -> Any:
        assert self.target is not None, "Ref target is bound when the model is built"
        return self.target(*args)

    def extra_repr(self) -> str:
        return self.path


class Reshape(nn.Module):
    """``x.reshape(x.shape[0], *shape)``: the batch dimension is kept."""

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        super().__init__()
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if sum(1 for s in self.shape if s == -1) > 1:
            raise ValueError("at most one size may be -1")
        if any(s == 0 or s < -1 for s in self.shape):
            raise ValueError("sizes are positive (or -1 for the rest)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rest = math.prod(x.shape[1:])
        known = math.prod(s for s in self.shape if s != -1)
        fits = rest % known == 0 if -1 in self.shape else rest == known
        if not fits:
            raise LayerInputError(
                f"{_shape(x)} has {rest} elements per sample; they do not fit "
                f"{format_shape(self.shape)}",
                f"a multiple of {known} elements per sample"
                if -1 in self.shape
                else f"{known} elements per sample",
            )
        return x.reshape(x.shape[0], *self.shape)


class Permute(nn.Module):
    """``x.permute(*dims)``, as torch (the batch dimension included)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.dims) != x.dim():
            raise LayerInputError(
                f"Permute({list(self.dims)}) got a {x.dim()}-D input {_shape(x)}",
                f"a {len(self.dims)}-D input",
            )
        return x.permute(*self.dims)


class Transpose(nn.Module):
    """``x.transpose(dim0, dim1)``, as torch."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0 = dim0
        self.dim1 = dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)


class Take(nn.Module):
    """Element ``index`` of a tuple output (LSTM, MultiheadAttention)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Any) -> Any:
        if not isinstance(x, tuple | list):
            raise LayerInputError(
                f"Take({self.index}) got a single tensor, not a tuple",
                "a tuple (from LSTM, GRU, MultiheadAttention, or Parallel with merge: tuple)",
                "remove the `Take` entry",
            )
        if not -len(x) <= self.index < len(x):
            raise LayerInputError(
                f"Take({self.index}) got a tuple of {len(x)}", f"an index below {len(x)}"
            )
        return x[self.index]


class Mean(nn.Module):
    """The mean over ``dim`` (pooling a sequence)."""

    def __init__(self, dim: int | tuple[int, ...] = 1, keepdim: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dim, keepdim=self.keepdim)


class Select(nn.Module):
    """``x.select(dim, index)``: one position, e.g. the class token."""

    def __init__(self, dim: int = 1, index: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)


class ClassToken(nn.Module):
    """Prepend a learned token: (B, T, D) → (B, T+1, D)."""

    AUTO: ClassVar[dict[str, str]] = {"dim": "last"}

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.empty(1, 1, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.token.shape[-1]
        if x.dim() != 3 or x.shape[-1] != dim:
            raise LayerInputError(
                f"ClassToken({dim}) got {_shape(x)}", f"B×T×{dim}", "use `ClassToken: auto`"
            )
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionalEmbedding(nn.Module):
    """``x + weight[:T]`` for x of shape (B, T, D): learned positions."""

    AUTO: ClassVar[dict[str, str]] = {"dim": "last"}

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_positions, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions, dim = self.weight.shape
        if x.dim() != 3 or x.shape[-1] != dim or x.shape[1] > positions:
            raise LayerInputError(
                f"PositionalEmbedding({positions}, {dim}) got {_shape(x)}",
                f"B×T×{dim} with T ≤ {positions}",
            )
        return x + self.weight[: x.shape[1]]


class Attention(nn.Module):
    """Multi-head self-attention with q/k/v/o projections, on (B, T, dim).

    ``kv_heads`` below ``heads`` is grouped-query attention (each k/v head serves
    ``heads / kv_heads`` query heads); ``head_dim`` defaults to ``dim / heads``.
    """

    AUTO: ClassVar[dict[str, str]] = {"dim": "last"}

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}; set head_dim")
            head_dim = dim // heads
        if heads % kv_heads:
            raise ValueError(f"heads {heads} is not a multiple of kv_heads {kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.dropout = causal, dropout
        self.q = nn.Linear(dim, heads * head_dim, bias=bias)
        self.k = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.v = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.o = nn.Linear(heads * head_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.q.in_features
        if x.dim() != 3 or x.shape[-1] != dim:
            raise LayerInputError(
                f"Attention(dim={dim}) got {_shape(x)}", f"B×T×{dim}", "use `dim: auto`"
            )
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.heads:
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )
        merged: torch.Tensor = self.o(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
        return merged


OWN_MODULES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        Sequential, Residual, Parallel, Ref, Reshape, Permute, Transpose, Take, Mean, Select,
        ClassToken, PositionalEmbedding, Attention,
    )
}  # fmt: skip
