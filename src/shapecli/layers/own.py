"""shapecli's own layers: the small set that turns lists of torch.nn layers into real
architectures (layer lists that read named tensors, residual blocks, branches,
elementwise and matrix ops on several tensors, free parameters, attention, tokens and
positions).

Each is an ordinary ``nn.Module`` with a typed ``__init__``, so the same signature
checks apply to them as to ``torch.nn`` classes, and a model built from a spec is plain
PyTorch. When a layer cannot take its input it raises :class:`LayerInputError`, whose
``expected`` the dry run reports in the layer's own terms.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from shapecli.ir import Program, Slot
from shapecli.report import Merge, format_shape


class LayerInputError(ValueError):
    """A layer of ours cannot take its input; ``expected`` says what it needed, and
    ``tensor`` (when one input is the problem, a mask say) which one to trace back."""

    def __init__(
        self, message: str, expected: str, hint: str | None = None, tensor: object = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.hint = hint
        self.tensor = tensor


class ArgumentError(ValueError):
    """One of these layers refused its arguments (``dim 32 is not divisible by heads 5;
    set head_dim``). The message is written for the person writing the spec, so it is
    the reason to report, not a third party's detail to keep below ours."""


def _shape(t: torch.Tensor) -> str:
    # a symbolic size (a torch.SymInt in shapecli's symbolic pass) is written as text
    return format_shape(tuple(d if isinstance(d, int) else str(d) for d in t.shape))


def _tensor(x: object, layer: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise LayerInputError(
            f"{layer} got a {type(x).__name__}, not a tensor",
            "a tensor",
            "after a layer that returns a tuple (LSTM, MultiheadAttention) add `Take: 0`",
        )
    return x


def _input(x: object, layer: str, dims: int | tuple[int, ...]) -> torch.Tensor:
    """``x``, checked to be a tensor that has the dims ``dims``."""
    t = _tensor(x, layer)
    check_dims(dims, t.dim(), f"a {t.dim()}-D input")
    return t


@dataclass
class _Running:
    """How a layer list runs: its program, the list it is written in (whose names it may
    read; held, not registered) and the names of each of its calls still running."""

    program: Program
    outer: Sequential | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Running:
        # A copy reads the names of the same list around it (the one that runs it).
        return _Running(self.program, self.outer)


def check_dims(dims: int | tuple[int, ...], rank: int, noun: str, new: bool = False) -> None:
    """Raise if a ``dim`` argument is out of range for ``rank``-D tensors, in those words.

    torch's own error for it (and a join's ``equal shapes except in dim 3`` on equal
    shapes) points at the input, while the fix is usually the dim: counted from 0 with
    the batch included, or from the end. ``new``: a dim that inserts one (``Stack``),
    which may also be ``rank``. ``noun`` names the inputs (``3-D tensors``, ``a 3-D
    input``). A 0-D input is left to torch (it takes dims 0 and -1 as if it were 1-D).
    """
    size = rank + 1 if new else rank
    for dim in (dims,) if isinstance(dims, int) else dims:
        if rank and not -size <= dim < size:
            needed = (dim + 1 if dim >= 0 else -dim) - (1 if new else 0)
            raise LayerInputError(
                f"dim {dim} is out of range for {noun} (valid: {-size}…{size - 1})",
                f"at least {needed} dims for dim {dim}",
                "dims count from 0 with the batch dim included, or from the end (-1 is the last)",
            )


def _output(x: object, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise LayerInputError(
            f"{what} returned a {type(x).__name__}, not a tensor",
            "every branch to return a tensor (or `merge: tuple`)",
            "end the branch with `Take: 0` after a layer that returns a tuple (LSTM, "
            "MultiheadAttention)",
        )
    return x


class Sequential(nn.Sequential):
    """A layer list, its children named by the spec (default: their index), run as its
    :class:`~shapecli.ir.Program`: one small interpreter over the list's part of the
    graph. Each member reads the values its step names — the list's inputs, earlier
    members, or (for a list nested in another) the names of the lists around it while
    they run — and the list returns its output.
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)
        self._shapecli = _Running(Program())

    def wired(self, program: Program, outer: Sequential | None = None) -> Sequential:
        """This list, run as ``program``, inside ``outer`` (whose names it may read)."""
        self._shapecli = _Running(program, outer)
        return self

    def forward(self, *inputs: Any) -> Any:
        run = self._shapecli
        program = run.program
        if program.plain:
            values: tuple[Any, ...] = inputs
            for module in self._modules.values():
                values = (module(*values),)
            return values[0] if len(values) == 1 else values
        names = program.inputs
        if names is None:
            names = tuple(f"#{i}" for i in range(len(inputs)))
        elif len(inputs) != len(names):
            raise LayerInputError(
                f"this list reads {len(names)} inputs ({', '.join(names)}), got {len(inputs)}",
                f"{len(names)} inputs ({', '.join(names)})",
            )
        frame: dict[str, Any] = dict(zip(names, inputs, strict=True))
        run.frames.append(frame)
        try:
            previous: tuple[Any, ...] = inputs
            for step in program.steps:
                module = self._modules[step.name]
                if step.args is None and not step.kwargs:
                    out = module(*previous)
                else:
                    args = [self._read(slot) for slot in step.args or ()]
                    kwargs = {key: self._read(slot) for key, slot in step.kwargs}
                    out = module(*args, **kwargs)
                frame[step.name] = out
                previous = (out,)
            if program.output is not None:
                results = tuple(self._read(slot) for slot in program.output)
                return results[0] if len(results) == 1 else results
            return previous[0] if len(previous) == 1 else previous
        finally:
            run.frames.pop()

    def _read(self, slot: Slot) -> Any:
        up, name = slot
        owner: Sequential | None = self
        for _ in range(up):
            owner = owner._shapecli.outer if owner is not None else None
        if owner is None or not owner._shapecli.frames:
            raise LayerInputError(
                f"`{name}` is read from a list that is not running (a `Ref` to a list "
                "that reads the names around it works only inside that list)",
                f"the tensor `{name}`",
            )
        return owner._shapecli.frames[-1][name]

    def extra_repr(self) -> str:
        program = self._shapecli.program
        if program.plain:
            return ""
        parts = [f"inputs={list(program.inputs)}"] if program.inputs is not None else []
        if program.output is not None:
            parts.append(f"output={[name for _, name in program.output]}")
        return ", ".join(parts)


class Repeat(Sequential):
    """The copies of ``repeat: N``: each copy reads the one before and the further
    inputs (a layer that holds copies, as ``MoE`` holds its experts, can tell them from
    a list written as one layer)."""

    def forward(self, *inputs: Any) -> Any:
        if not inputs:
            raise LayerInputError("a repeated layer got no input", "an input")
        out, rest = inputs[0], inputs[1:]
        for module in self._modules.values():
            out = module(out, *rest)
        return out


class Residual(nn.Module):
    """``shortcut(x) + body(x)``; without a shortcut, ``x + body(x)``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _output(self.body(x), "the Residual body")
        skip = x if self.shortcut is None else _output(self.shortcut(x), "the shortcut")
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
            raise ArgumentError("Parallel needs at least one branch")
        self.branches, self.merge, self.dim = branches, merge, dim

    def forward(self, x: torch.Tensor) -> Any:
        if self.merge == "tuple":  # any outputs, as they are
            return tuple(branch(x) for branch in self.branches)
        outs = [
            _output(branch(x), f"Parallel branch {i}") for i, branch in enumerate(self.branches)
        ]
        if self.merge in ("add", "mul"):
            return _elementwise(outs, self.merge, "Parallel branches")
        # Sizes compared one pair at a time, and written out only for the message:
        # symbolic sizes can be compared, but not hashed or formatted as numbers.
        if self.merge == "stack" and any(o.shape != outs[0].shape for o in outs[1:]):
            shapes = ", ".join(_shape(o) for o in outs)
            raise LayerInputError(
                f"branches returned {shapes}; `merge: stack` needs equal shapes",
                "every branch to return the same shape",
            )
        if self.merge == "cat":
            return _join(outs, self.dim, torch.cat, "Parallel branches")
        return torch.stack(outs, dim=self.dim)


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
        if self.shape.count(-1) > 1:
            raise ArgumentError("at most one size may be -1")
        if any(s == 0 or s < -1 for s in self.shape):
            raise ArgumentError("sizes are positive (or -1 for the rest)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rest = math.prod(_tensor(x, "Reshape").shape[1:])
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
        rank = _tensor(x, "Permute").dim()
        if len(self.dims) != rank:
            raise LayerInputError(
                f"Permute({list(self.dims)}) got a {rank}-D input {_shape(x)}",
                f"a {len(self.dims)}-D input",
            )
        check_dims(self.dims, rank, f"a {rank}-D input")
        if len({d % rank for d in self.dims}) < rank:
            raise LayerInputError(
                f"Permute({list(self.dims)}) names a dim twice",
                f"each of the {rank} dims once, in the new order",
            )
        return x.permute(*self.dims)


class Transpose(nn.Module):
    """``x.transpose(dim0, dim1)``, as torch."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "Transpose", (self.dim0, self.dim1)).transpose(self.dim0, self.dim1)


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
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "Mean", self.dim).mean(dim=self.dim, keepdim=self.keepdim)


class Select(nn.Module):
    """``x.select(dim, index)``: one position, e.g. the class token."""

    def __init__(self, dim: int = 1, index: int = 0) -> None:
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "Select", self.dim).select(self.dim, self.index)


class ClassToken(nn.Module):
    """Prepend ``count`` learned tokens: (B, T, D) → (B, T+count, D) (DeiT's class and
    distillation tokens: ``count: 2``). The parameter is 1×count×D; for another layout
    (CLIP's D) write ``Param``, ``Expand`` and ``Cat``."""

    AUTO: ClassVar[dict[str, str]] = {"dim": "last"}

    def __init__(self, dim: int, count: int = 1) -> None:
        super().__init__()
        if count < 1:
            raise ArgumentError(f"count {count} must be at least 1")
        self.token = nn.Parameter(torch.empty(1, count, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.token.shape[-1]
        if _tensor(x, "ClassToken").dim() != 3 or x.shape[-1] != dim:
            raise LayerInputError(
                f"ClassToken({dim}) got {_shape(x)}", f"B×T×{dim}", "use `ClassToken: auto`"
            )
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionalEmbedding(nn.Module):
    """``x + weight[offset:offset + T]`` for x of shape (B, T, D): learned positions
    (``offset: 2`` for BART, whose first two rows are never used)."""

    AUTO: ClassVar[dict[str, str]] = {"dim": "last"}

    def __init__(self, num_positions: int, dim: int, offset: int = 0) -> None:
        super().__init__()
        if not 0 <= offset < num_positions:
            raise ArgumentError(f"offset {offset} must be at least 0 and below {num_positions}")
        self.offset = offset
        self.weight = nn.Parameter(torch.empty(num_positions, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions, dim = self.weight.shape
        room = positions - self.offset
        if _tensor(x, "PositionalEmbedding").dim() != 3 or x.shape[-1] != dim or x.shape[1] > room:
            raise LayerInputError(
                f"PositionalEmbedding({positions}, {dim}) got {_shape(x)}",
                f"B×T×{dim} with T ≤ {room}",
            )
        return x + self.weight[self.offset : self.offset + x.shape[1]]


def _tensors(inputs: tuple[Any, ...], layer: str) -> list[torch.Tensor]:
    """The tensors a many-input layer got: its inputs, or the items of one tuple input
    (what ``Parallel`` with ``merge: tuple`` or an LSTM returns)."""
    one_tuple = len(inputs) == 1 and isinstance(inputs[0], tuple | list)
    return [_tensor(item, layer) for item in (inputs[0] if one_tuple else inputs)]


def broadcasts(*shapes: tuple[int, ...]) -> bool:
    """Do these shapes broadcast together (from the right, each size equal or 1)?"""
    longest = max((len(s) for s in shapes), default=0)
    for i in range(1, longest + 1):
        sizes = [s[-i] for s in shapes if len(s) >= i and s[-i] != 1]  # sizes may be symbols
        if any(d != sizes[0] for d in sizes[1:]):
            return False
    return True


def _elementwise(xs: list[torch.Tensor], op: str, what: str) -> torch.Tensor:
    if len(xs) < 2:
        raise LayerInputError(
            f"{what} got {len(xs)} tensor{'s' if len(xs) != 1 else ''}",
            "two or more tensors",
            "pass them with `in:`, e.g. `in: [_, skip]`",
        )
    if not broadcasts(*(tuple(x.shape) for x in xs)):
        shapes = ", ".join(_shape(x) for x in xs)
        raise LayerInputError(
            f"{what} cannot {op} {shapes}: they do not broadcast",
            "shapes that broadcast (from the right, each size equal or 1)",
        )
    return functools.reduce(operator.add if op == "add" else operator.mul, xs)


def _join(xs: list[torch.Tensor], dim: int, join: Any, what: str) -> torch.Tensor:
    ranks = {x.dim() for x in xs}
    stacking = join is torch.stack
    if len(ranks) == 1:
        rank = ranks.pop()
        check_dims(dim, rank, f"{'stacking ' if stacking else ''}{rank}-D tensors", new=stacking)
    try:
        result: torch.Tensor = join(xs, dim=dim)
    except (RuntimeError, IndexError) as e:
        shapes = ", ".join(_shape(x) for x in xs)
        same = "equal shapes except in" if join is torch.cat else "equal shapes, and a valid"
        raise LayerInputError(
            f"{what} {shapes} cannot be joined along dim {dim}", f"{same} dim {dim}"
        ) from e
    return result


class Add(nn.Module):
    """The elementwise sum of all inputs, broadcasting: ``in: [_, skip]``."""

    def forward(self, *inputs: Any) -> torch.Tensor:
        return _elementwise(_tensors(inputs, "Add"), "add", "Add")


class Mul(nn.Module):
    """The elementwise product of all inputs, broadcasting (squeeze-excitation, gates)."""

    def forward(self, *inputs: Any) -> torch.Tensor:
        return _elementwise(_tensors(inputs, "Mul"), "multiply", "Mul")


class Cat(nn.Module):
    """All inputs concatenated along ``dim``."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Any) -> torch.Tensor:
        return _join(_tensors(inputs, "Cat"), self.dim, torch.cat, "Cat")


class Stack(nn.Module):
    """All inputs stacked along a new ``dim``."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Any) -> torch.Tensor:
        return _join(_tensors(inputs, "Stack"), self.dim, torch.stack, "Stack")


class MatMul(nn.Module):
    """``a @ b`` (batched, broadcasting as ``torch.matmul``)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _tensor(a, "MatMul")
        _tensor(b, "MatMul")
        try:
            return torch.matmul(a, b)
        except RuntimeError as e:
            raise LayerInputError(
                f"MatMul cannot multiply {_shape(a)} by {_shape(b)}",
                "a's last dim equal to b's second-to-last (and batch dims that broadcast)",
            ) from e


ParamInit = Literal["zeros", "ones", "normal", "trunc_normal"]


class Param(nn.Module):
    """A learned tensor that reads no input: a class token, a layer scale, a bias table.

    ``init`` fills it when real weights are made (``normal`` and ``trunc_normal`` with
    ``std``), or a number fills it with that constant (ConvNeXt's layer scale: 1e-6).
    """

    def __init__(
        self, shape: int | tuple[int, ...], init: ParamInit | float = "normal", std: float = 0.02
    ) -> None:
        super().__init__()
        size = (shape,) if isinstance(shape, int) else tuple(shape)
        if any(d < 1 for d in size):  # `shape: []` is a scalar (CLIP's logit scale)
            raise ArgumentError(f"shape {list(size)} needs sizes of at least 1")
        self.init, self.std = init, std
        self.weight = nn.Parameter(torch.empty(size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "zeros":
                self.weight.zero_()
            elif self.init == "ones":
                self.weight.fill_(1.0)
            elif self.init == "normal":
                nn.init.normal_(self.weight, std=self.std)
            elif self.init == "trunc_normal":
                nn.init.trunc_normal_(self.weight, std=self.std)
            else:
                self.weight.fill_(float(self.init))

    def forward(self) -> torch.Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"{format_shape(tuple(self.weight.shape))}, init={self.init}"


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout: float = 0.0,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    layer: str = "attention",
) -> torch.Tensor:
    """Multi-head attention of (B, Tq, heads·d) queries over (B, Tk, kv_heads·d) keys and
    (B, Tk, kv_heads·dv) values → (B, Tq, heads·dv): split heads, repeat k/v heads for
    grouped queries, ``scaled_dot_product_attention``, merge heads.

    ``mask``: True where a query may attend (or an additive float mask); (B, Tk) masks
    padded keys, (Tq, Tk), (B, Tq, Tk) and (B, heads, Tq, Tk) broadcast. ``bias`` is
    added to the scores: (heads, Tq, Tk) or (B, heads, Tq, Tk).
    """
    for t, what in ((q, "queries"), (k, "keys"), (v, "values")):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            got = _shape(t) if isinstance(t, torch.Tensor) else type(t).__name__
            raise LayerInputError(
                f"{layer}: the {what} are {got}", "B×T×features for queries, keys and values"
            )
    b, tq, width = q.shape
    tk = k.shape[1]
    if width % heads:
        raise LayerInputError(
            f"{layer}: queries of {width} features do not split into {heads} heads",
            f"a multiple of {heads} query features",
        )
    head_dim = width // heads
    if k.shape[-1] % head_dim or k.shape[:2] != v.shape[:2] or k.shape[0] != b:
        raise LayerInputError(
            f"{layer}: keys {_shape(k)} and values {_shape(v)} do not fit queries {_shape(q)}",
            f"keys and values B×Tk×(kv_heads·{head_dim}) with the queries' batch",
        )
    kv_heads = k.shape[-1] // head_dim
    if heads % kv_heads or v.shape[-1] % kv_heads:
        raise LayerInputError(
            f"{layer}: {kv_heads} key heads cannot serve {heads} query heads",
            f"a number of key heads that divides {heads}",
        )
    qh = q.view(b, tq, heads, head_dim).transpose(1, 2)
    kh = k.view(b, tk, kv_heads, head_dim).transpose(1, 2)
    vh = v.view(b, tk, kv_heads, v.shape[-1] // kv_heads).transpose(1, 2)
    if kv_heads != heads:
        kh = kh.repeat_interleave(heads // kv_heads, dim=1)
        vh = vh.repeat_interleave(heads // kv_heads, dim=1)
    scores = _scores_mask(mask, bias, (b, heads, tq, tk), causal, q.dtype, q.device, layer)
    out = F.scaled_dot_product_attention(
        qh,
        kh,
        vh,
        attn_mask=scores,
        is_causal=causal and scores is None,
        scale=scale,
        dropout_p=dropout,
    )
    return out.transpose(1, 2).reshape(b, tq, -1)


def _scores_mask(
    mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    scores: tuple[int, int, int, int],
    causal: bool,
    dtype: torch.dtype,
    device: torch.device,
    layer: str,
) -> torch.Tensor | None:
    """One additive (or boolean) mask for the (B, heads, Tq, Tk) scores, or None."""
    b, _, tq, tk = scores
    parts: list[torch.Tensor] = []
    for given, what in ((mask, "mask"), (bias, "bias")):
        if given is None:
            continue
        if not isinstance(given, torch.Tensor):
            raise LayerInputError(f"{layer}: the {what} is not a tensor", "a tensor")
        t = given
        if what == "mask" and t.dim() == 2 and tuple(t.shape) == (b, tk):
            t = t[:, None, None, :]  # padded keys
        elif t.dim() < 4:
            t = t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))
        if t.dim() != 4 or not broadcasts(tuple(t.shape), scores):
            raise LayerInputError(
                f"{layer}: a {what} of {_shape(given)} does not fit the scores "
                f"{format_shape(scores)} (B×heads×Tq×Tk)",
                f"a {what} that broadcasts to B×heads×Tq×Tk: B×Tk, Tq×Tk, B×Tq×Tk, or heads×Tq×Tk",
                tensor=given,
            )
        parts.append(_additive(t, dtype))
    if not parts:
        return None
    if causal:
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=device).tril(tk - tq)
        parts.append(_additive(allowed, dtype))
    return functools.reduce(operator.add, parts)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: may attend) as 0 / -inf scores; a float mask as it is."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


class ScaledDotProduct(nn.Module):
    """Attention over given queries, keys and values (and an optional mask and additive
    bias): split into ``heads``, ``scaled_dot_product_attention``, merge. With Linears
    around it, any attention variant can be written; ``scale: 1.0`` for T5's unscaled
    scores."""

    def __init__(
        self, heads: int, causal: bool = False, scale: float | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.heads, self.causal, self.scale, self.dropout = heads, causal, scale, dropout

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return attend(
            q, k, v, self.heads, causal=self.causal, scale=self.scale,
            dropout=self.dropout if self.training else 0.0, mask=mask, bias=bias,
            layer="ScaledDotProduct",
        )  # fmt: skip


class Attention(nn.Module):
    """Multi-head attention with q/k/v/o projections, on (B, T, dim).

    ``kv_heads`` below ``heads`` is grouped-query attention (each k/v head serves
    ``heads / kv_heads`` query heads); ``head_dim`` defaults to ``dim / heads``. Keys and
    values come from ``context`` when it is given (cross-attention, ``context_dim``
    features); ``mask`` and ``bias`` as for :class:`ScaledDotProduct`. ``fused_qkv``
    lays q, k and v out as one Linear ``qkv`` (torchvision's ViT and Swin, GPT-2's
    ``c_attn``). ``rope_theta`` turns queries and keys by their positions (rotary
    embeddings, as Llama), in the first ``rotary_dim`` features of each head.
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
        fused_qkv: bool = False,
        context_dim: int | None = None,
        scale: float | None = None,
        rope_theta: float | None = None,
        rotary_dim: int | None = None,
    ) -> None:
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if head_dim is None:
            if dim % heads:
                raise ArgumentError(f"dim {dim} is not divisible by heads {heads}; set head_dim")
            head_dim = dim // heads
        if heads % kv_heads:
            raise ArgumentError(f"heads {heads} is not a multiple of kv_heads {kv_heads}")
        if fused_qkv and context_dim not in (None, dim):
            raise ArgumentError("fused_qkv projects q, k and v from one input: no context_dim")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.dropout, self.scale = causal, dropout, scale
        if rope_theta is not None:
            _check_rotary(head_dim, rotary_dim)
        self.rope_theta, self.rotary_dim = rope_theta, rotary_dim
        self.dim = dim
        kv_width = kv_heads * head_dim
        if fused_qkv:
            self.qkv = nn.Linear(dim, heads * head_dim + 2 * kv_width, bias=bias)
        else:
            self.q = nn.Linear(dim, heads * head_dim, bias=bias)
            self.k = nn.Linear(context_dim or dim, kv_width, bias=bias)
            self.v = nn.Linear(context_dim or dim, kv_width, bias=bias)
        self.o = nn.Linear(heads * head_dim, dim, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dim = self.dim
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            got = _shape(x) if isinstance(x, torch.Tensor) else type(x).__name__
            rank = x.dim() if isinstance(x, torch.Tensor) else 0
            hint = (
                "flatten the positions into one sequence first, e.g. `Flatten: {start_dim: 2}` "
                "then `Transpose: [1, 2]`"
                if rank > 3
                else "add the missing dimension (batch or sequence) with `Reshape`"
            )
            raise LayerInputError(f"Attention got {got}", f"a 3-D input B×T×{dim}", hint)
        if x.shape[-1] != dim:
            raise LayerInputError(
                f"Attention(dim={dim}) got {_shape(x)}", f"B×T×{dim}", "use `dim: auto`"
            )
        if hasattr(self, "qkv"):
            if context is not None:
                raise LayerInputError(
                    "Attention with fused_qkv got a context",
                    "no context (fused q/k/v project one input)",
                    "drop `fused_qkv` for cross-attention",
                )
            widths = [self.heads * self.head_dim, *(2 * [self.kv_heads * self.head_dim])]
            q, k, v = self.qkv(x).split(widths, dim=-1)
        else:
            source = x if context is None else context
            q, k, v = self.q(x), self.k(source), self.v(source)
        if self.rope_theta is not None:
            q = rotary(q, self.head_dim, self.rope_theta, self.rotary_dim, layer="Attention")
            k = rotary(k, self.head_dim, self.rope_theta, self.rotary_dim, layer="Attention")
        out = attend(
            q, k, v, self.heads, causal=self.causal, scale=self.scale,
            dropout=self.dropout if self.training else 0.0, mask=mask, bias=bias,
            layer="Attention",
        )  # fmt: skip
        merged: torch.Tensor = self.o(out)
        return merged


class PositionBuckets(nn.Module):
    """T5's relative positions: for queries (B, Tq, …) and keys (B, Tk, …) — or one
    tensor for both — the bucket of each key's distance from each query, a (Tq, Tk)
    int64 tensor for an ``Embedding: [buckets, heads]`` (then ``Permute: [2, 0, 1]``
    gives the heads×Tq×Tk bias ``Attention`` and ``ScaledDotProduct`` add)."""

    def __init__(self, buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional

    def forward(self, queries: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        keys = queries if keys is None else keys
        for t in (queries, keys):
            if _tensor(t, "PositionBuckets").dim() < 2:
                raise LayerInputError(
                    f"PositionBuckets got {_shape(t)}", "B×T×… tensors (T: the sequence)"
                )
        device = queries.device
        relative = (
            torch.arange(keys.shape[1], device=device)[None, :]
            - torch.arange(queries.shape[1], device=device)[:, None]
        )
        buckets = self.buckets
        result = torch.zeros_like(relative)
        if self.bidirectional:
            buckets //= 2
            result = result + (relative > 0).long() * buckets
            relative = relative.abs()
        else:
            relative = -torch.clamp(relative, max=0)
        exact = buckets // 2
        log_ratio = torch.log(relative.float().clamp(min=1) / exact)
        scaled = log_ratio / math.log(self.max_distance / exact) * (buckets - exact)
        large = torch.clamp(exact + scaled.long(), max=buckets - 1)
        return result + torch.where(relative < exact, relative, large)


class Roll(nn.Module):
    """``torch.roll``: the cyclic shift of Swin's shifted windows."""

    def __init__(self, shifts: int | tuple[int, ...], dims: int | tuple[int, ...]) -> None:
        super().__init__()
        self.shifts = shifts if isinstance(shifts, int) else tuple(shifts)
        self.dims = dims if isinstance(dims, int) else tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(_input(x, "Roll", self.dims), self.shifts, self.dims)


class WindowPartition(nn.Module):
    """(B, H, W, C) → (B·windows, size², C): non-overlapping size×size windows, each a
    sequence for attention (Swin). H and W must be multiples of ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.size
        if _tensor(x, "WindowPartition").dim() != 4 or x.shape[1] % s or x.shape[2] % s:
            raise LayerInputError(
                f"WindowPartition({s}) got {_shape(x)}", f"B×H×W×C with H and W multiples of {s}"
            )
        b, h, w, c = x.shape
        windows = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5)
        return windows.reshape(-1, s * s, c)


class WindowMerge(nn.Module):
    """The inverse of :class:`WindowPartition`: (B·windows, size², C) back to the
    (B, H, W, C) of ``like`` (the tensor that was partitioned: ``in: [_, x]``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, windows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        s = self.size
        if _tensor(windows, "WindowMerge").dim() != 3 or _tensor(like, "WindowMerge").dim() != 4:
            raise LayerInputError(
                f"WindowMerge({s}) got {_shape(windows)} and {_shape(like)}",
                "windows (B·n)×size²×C and the B×H×W×C tensor they came from",
            )
        b, h, w, _ = like.shape
        if windows.shape[0] != b * (h // s) * (w // s) or windows.shape[1] != s * s:
            raise LayerInputError(
                f"WindowMerge({s}): {_shape(windows)} are not the windows of {_shape(like)}",
                f"{b * (h // s) * (w // s)}×{s * s}×C windows",
            )
        c = windows.shape[-1]
        x = windows.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, h, w, c)


class RelativePositionBias(nn.Module):
    """Swin's bias gather: a table of ((2·size - 1)², heads) learned biases (a ``Param``)
    → the heads×size²×size² bias of every pair of positions in a window."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("index", self._index(None), persistent=False)

    def reset_parameters(self) -> None:
        """Compute the index again: real weights are allocated empty (``to_empty``), and
        a buffer made in the constructor on the meta device has no values to keep."""
        index = cast(torch.Tensor, self.index)
        with torch.no_grad():
            index.copy_(self._index(index.device))

    def _index(self, device: torch.device | None) -> torch.Tensor:
        size = self.size
        positions = torch.arange(size, device=device)
        coords = torch.stack(torch.meshgrid(positions, positions, indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)
        index = relative[..., 0] * (2 * size - 1) + relative[..., 1]
        return index.flatten()

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        rows = (2 * self.size - 1) ** 2
        if _tensor(table, "RelativePositionBias").dim() != 2 or table.shape[0] != rows:
            raise LayerInputError(
                f"RelativePositionBias({self.size}) got a table of {_shape(table)}",
                f"a {rows}×heads table",
                f"`Param: {{shape: [{rows}, heads]}}`",
            )
        n = self.size * self.size
        index = cast(torch.Tensor, self.index)
        return table[index].view(n, n, -1).permute(2, 0, 1).contiguous()


# -- slicing, gathering and routing ------------------------------------------------------


def _has_values(x: torch.Tensor) -> bool:
    """Does ``x`` hold numbers? A meta tensor or a fake one (symbolic sizes) has only
    a shape, so a layer whose work depends on values must take another path."""
    from torch._subclasses.fake_tensor import is_fake  # loaded with torch itself

    return x.device.type != "meta" and not is_fake(x)


def _size(x: torch.Tensor, dim: int) -> int | None:
    """The size of ``dim`` when it is a number (not a symbolic size), else None."""
    size = x.shape[dim]
    return size if isinstance(size, int) else None


class Slice(nn.Module):
    """``x[start:end:step]`` along ``dim``, as Python slices (negative counts from the
    end): ``Slice: {dim: 1, start: 1}`` is ``x[:, 1:]``, which drops the class token;
    ``{dim: -1, end: -1}`` drops the last position."""

    def __init__(self, dim: int = 1, start: int = 0, end: int | None = None, step: int = 1):
        super().__init__()
        if step < 1:
            raise ArgumentError(f"step {step} must be at least 1")
        self.dim, self.start, self.end, self.step = dim, start, end, step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _input(x, "Slice", self.dim)
        dim = self.dim % x.dim()
        where = (slice(None),) * dim + (slice(self.start, self.end, self.step),)
        out = x[where]
        if _size(out, dim) == 0:
            raise LayerInputError(
                f"Slice [{self.start}:{'' if self.end is None else self.end}] of dim "
                f"{self.dim} of {_shape(x)} is empty",
                f"dim {self.dim} longer than the slice's start",
            )
        return out

    def extra_repr(self) -> str:
        end = "" if self.end is None else self.end
        return f"dim={self.dim}, [{self.start}:{end}:{self.step}]"


class Split(nn.Module):
    """``torch.split``: pieces of ``size`` along ``dim`` (the last one may be shorter),
    or of the listed sizes, as a tuple for ``Take`` or for wiring (``in: [pieces]``)."""

    def __init__(self, size: int | tuple[int, ...], dim: int = -1) -> None:
        super().__init__()
        self.size = size if isinstance(size, int) else tuple(size)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = _input(x, "Split", self.dim)
        total = _size(x, self.dim)
        if isinstance(self.size, tuple) and total is not None and sum(self.size) != total:
            raise LayerInputError(
                f"Split{list(self.size)} of dim {self.dim} of {_shape(x)}: the sizes add up "
                f"to {sum(self.size)}",
                f"dim {self.dim} of size {sum(self.size)}",
            )
        size = self.size if isinstance(self.size, int) else list(self.size)
        return tuple(torch.split(x, size, dim=self.dim))


class Chunk(nn.Module):
    """``torch.chunk``: ``chunks`` pieces along ``dim`` as a tuple (ShuffleNet's channel
    split, a GLU's halves)."""

    def __init__(self, chunks: int, dim: int = -1) -> None:
        super().__init__()
        if chunks < 1:
            raise ArgumentError(f"chunks {chunks} must be at least 1")
        self.chunks, self.dim = chunks, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = _input(x, "Chunk", self.dim)
        total = _size(x, self.dim)
        if total is not None and total % self.chunks:
            raise LayerInputError(
                f"Chunk({self.chunks}) of dim {self.dim} of {_shape(x)}: {total} does not "
                f"split into {self.chunks} equal pieces",
                f"dim {self.dim} a multiple of {self.chunks}",
                "`Split` takes uneven sizes",
            )
        return tuple(torch.chunk(x, self.chunks, dim=self.dim))


def _indices(index: object, layer: str) -> torch.Tensor:
    t = _tensor(index, layer)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise LayerInputError(
            f"{layer} got indices of {t.dtype}", "whole-number indices (int64)", tensor=t
        )
    return t


class Gather(nn.Module):
    """Pick positions of ``x`` along ``dim`` by index: ``in: [x, index]``. For each
    position of the dims before ``dim``, ``index`` lists the positions to take — a B×K
    index of a B×T×D tensor gives B×K×D (the tokens ViT-MAE keeps) — or names one, a B
    index giving B×D (the end-of-text token CLIP pools)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        _tensor(x, "Gather")
        index = _indices(index, "Gather")
        check_dims(self.dim, x.dim(), f"a {x.dim()}-D input")
        dim = self.dim % x.dim()
        one = index.dim() == dim
        picked = index.unsqueeze(-1) if one else index
        lead = tuple(x.shape[:dim])
        if picked.dim() != dim + 1 or tuple(picked.shape[:dim]) != lead:
            raise LayerInputError(
                f"Gather(dim={self.dim}) cannot index {_shape(x)} with {_shape(index)}",
                f"an index of {format_shape(lead)}×K (K positions each) or "
                f"{format_shape(lead)} (one each)",
                tensor=index,
            )
        rest = tuple(x.shape[dim + 1 :])
        full = picked.reshape(*picked.shape, *(1 for _ in rest)).expand(*picked.shape, *rest)
        out = x.gather(dim, full.long())
        return out.squeeze(dim) if one else out


class TopK(nn.Module):
    """``torch.topk``: the ``k`` largest (``largest: false``: smallest) values along
    ``dim`` and their indices, as a tuple (values, indices)."""

    def __init__(self, k: int, dim: int = -1, largest: bool = True) -> None:
        super().__init__()
        if k < 1:
            raise ArgumentError(f"k {k} must be at least 1")
        self.k, self.dim, self.largest = k, dim, largest

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _input(x, "TopK", self.dim)
        size = _size(x, self.dim)
        if size is not None and size < self.k:
            raise LayerInputError(
                f"TopK({self.k}) over dim {self.dim} of {_shape(x)}",
                f"at least {self.k} values along dim {self.dim}",
            )
        values, indices = torch.topk(x, self.k, dim=self.dim, largest=self.largest)
        return values, indices


class ArgMax(nn.Module):
    """``x.argmax(dim)``: where the largest value is (CLIP finds its end-of-text token
    as the largest token id)."""

    def __init__(self, dim: int = -1, keepdim: bool = False) -> None:
        super().__init__()
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "ArgMax", self.dim).argmax(dim=self.dim, keepdim=self.keepdim)


class ArgSort(nn.Module):
    """``x.argsort(dim)``: the order that sorts ``x`` (ViT-MAE's shuffle and restore)."""

    def __init__(self, dim: int = -1, descending: bool = False) -> None:
        super().__init__()
        self.dim, self.descending = dim, descending

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "ArgSort", self.dim).argsort(dim=self.dim, descending=self.descending)


class Noise(nn.Module):
    """Uniform noise in [0, 1) of the shape of the input's first ``dims`` dims (ViT-MAE
    ranks it to choose which patches to mask). On the meta device it is a shape without
    values, so a dry run draws nothing and routes nothing: every size is still exact."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        if dims < 1:
            raise ArgumentError(f"dims {dims} must be at least 1")
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _tensor(x, "Noise")
        if x.dim() < self.dims:
            raise LayerInputError(
                f"Noise(dims={self.dims}) got {_shape(x)}", f"at least {self.dims} dims"
            )
        dtype = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
        return torch.rand(x.shape[: self.dims], dtype=dtype, device=x.device)


class Expand(nn.Module):
    """A tensor repeated over another's batch: ``in: [token, x]`` gives ``token`` the
    sizes of ``x`` in ``dims`` (default the batch, dim 0) without copying it — class
    tokens, DETR's object queries, ViT-MAE's mask tokens. Missing leading dims are
    added first (a D or T×D parameter becomes 1×D or 1×T×D), and the dims to fill must
    have size 1. Reading ``x``'s sizes, it works for any batch, a symbolic one too."""

    def __init__(self, dims: int | tuple[int, ...] = 0) -> None:
        super().__init__()
        self.dims = (dims,) if isinstance(dims, int) else tuple(dims)

    def forward(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        _tensor(t, "Expand")
        _tensor(like, "Expand")
        check_dims(self.dims, like.dim(), f"the {like.dim()}-D tensor it expands like")
        while t.dim() < like.dim():
            t = t.unsqueeze(0)
        sizes = [-1] * t.dim()
        for given in self.dims:
            d = given % like.dim()
            if t.shape[d] != 1:
                raise LayerInputError(
                    f"Expand cannot give {_shape(t)} the size {like.shape[d]} of dim {d}: it "
                    f"is {t.shape[d]} there",
                    f"size 1 in dim {d}",
                )
            sizes[d] = like.shape[d]
        return t.expand(*sizes)


class ReshapeAs(nn.Module):
    """``x.reshape(like.shape)``: ``in: [x, like]`` (a flat tensor back to the shape it
    came from)."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        _tensor(x, "ReshapeAs")
        _tensor(like, "ReshapeAs")
        counts = (x.numel(), like.numel())
        if all(isinstance(c, int) for c in counts) and counts[0] != counts[1]:
            raise LayerInputError(
                f"ReshapeAs cannot make {_shape(x)} ({counts[0]} elements) into "
                f"{_shape(like)} ({counts[1]})",
                f"{counts[1]} elements",
            )
        return x.reshape(like.shape)


# -- arithmetic without parameters ---------------------------------------------------------


class Scale(nn.Module):
    """``x · by^power + shift``, constants: ``Scale: 0.125`` scales attention scores,
    ``{by: 2048, power: 0.5}`` multiplies by √2048 (Gemma's embeddings), ``{shift: 1}``
    adds one (Gemma's norms multiply by 1 + w)."""

    def __init__(self, by: float = 1.0, power: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.by, self.power, self.shift = by, power, shift
        if by < 0 and not float(power).is_integer():
            raise ArgumentError(f"{by} to the power {power} is not a real number")
        if by == 0 and power < 0:
            raise ArgumentError(f"0 to the power {power} is not a number")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _tensor(x, "Scale")
        factor = float(self.by) ** self.power
        out = x if factor == 1 else x * factor
        return out if self.shift == 0 else out + self.shift


class Exp(nn.Module):
    """``x.exp()`` (CLIP's learned temperature is stored as its logarithm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tensor(x, "Exp").exp()


class Sum(nn.Module):
    """The sum over ``dim``."""

    def __init__(self, dim: int | tuple[int, ...] = 1, keepdim: bool = False) -> None:
        super().__init__()
        self.dim = dim if isinstance(dim, int) else tuple(dim)
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _input(x, "Sum", self.dim).sum(dim=self.dim, keepdim=self.keepdim)


class Normalize(nn.Module):
    """``F.normalize``: unit ``p``-norm along ``dim`` (CLIP's embeddings before their
    similarities)."""

    def __init__(self, p: float = 2.0, dim: int = -1, eps: float = 1e-12) -> None:
        super().__init__()
        self.p, self.dim, self.eps = p, dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(_input(x, "Normalize", self.dim), p=self.p, dim=self.dim, eps=self.eps)


class QuickGELU(nn.Module):
    """``x · sigmoid(1.702 x)``: the GELU approximation of OpenAI's CLIP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * _tensor(x, "QuickGELU"))


# -- positions without parameters ----------------------------------------------------------


class Positions(nn.Module):
    """The positions of the input along ``dim``: ``arange(offset, offset + T)``, int64,
    for an ``Embedding`` (learned positions) or ``Sinusoidal``; (T, D) broadcasts onto
    B×T×D in an ``Add``."""

    def __init__(self, dim: int = 1, offset: int = 0) -> None:
        super().__init__()
        self.dim, self.offset = dim, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _input(x, "Positions", self.dim)
        return torch.arange(self.offset, self.offset + x.shape[self.dim], device=x.device)


class Sinusoidal(nn.Module):
    """Fixed sine/cosine features of positions or timesteps: input of any shape (the
    values are the positions) → its shape × ``dim``.

    The frequencies are ``exp(-ln(max_period) · i / (dim/2 - shift))`` for i < dim/2,
    each position (times ``scale``) taken to sin and cos: the sines then the cosines
    (diffusers' timestep embedding; ``flip: true`` puts the cosines first), or
    ``interleave: true`` sin, cos pairs (the original Transformer's table, DETR's
    2-D encoding per axis).
    """

    def __init__(
        self,
        dim: int,
        max_period: float = 10000.0,
        shift: float = 0.0,
        scale: float = 1.0,
        flip: bool = False,
        interleave: bool = False,
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ArgumentError(f"dim {dim} must be even: it holds sine and cosine pairs")
        if dim // 2 - shift <= 0:
            raise ArgumentError(f"shift {shift} must be below dim / 2 = {dim // 2}")
        self.dim, self.max_period, self.shift = dim, max_period, shift
        self.scale, self.flip, self.interleave = scale, flip, interleave

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        _tensor(positions, "Sinusoidal")
        half = self.dim // 2
        steps = torch.arange(half, dtype=torch.float32, device=positions.device)
        frequencies = torch.exp(-math.log(self.max_period) * steps / (half - self.shift))
        angles = positions.float()[..., None] * frequencies * self.scale
        first, second = (angles.cos(), angles.sin()) if self.flip else (angles.sin(), angles.cos())
        if self.interleave:
            return torch.stack([first, second], dim=-1).flatten(-2)
        return torch.cat([first, second], dim=-1)


def rotary(
    x: torch.Tensor,
    head_dim: int,
    theta: float,
    rotary_dim: int | None = None,
    interleaved: bool = False,
    positions: torch.Tensor | None = None,
    layer: str = "Rotary",
) -> torch.Tensor:
    """Rotary position embedding of (B, T, heads·head_dim) queries or keys: in each
    head, the first ``rotary_dim`` features (all by default) turn by ``position ·
    theta^(-2i/rotary_dim)`` — as pairs of halves (``rotate_half``: Llama, Mistral,
    Qwen2, Gemma, Phi, Falcon in transformers) or of neighbours (``interleaved``:
    GPT-J, Meta's Llama code). ``positions``: (T,) or (B, T), default 0 … T-1."""
    rot = head_dim if rotary_dim is None else rotary_dim
    if x.dim() != 3 or (_size(x, -1) is not None and x.shape[-1] % head_dim):
        raise LayerInputError(f"{layer} got {_shape(x)}", f"B×T×(heads·{head_dim}) queries or keys")
    b, t, width = x.shape
    heads = x.view(b, t, width // head_dim, head_dim)
    if positions is None:
        positions = torch.arange(t, device=x.device)
    inverse = 1.0 / (
        theta ** (torch.arange(0, rot, 2, dtype=torch.int64, device=x.device).float() / rot)
    )
    angles = positions.float()[..., None] * inverse  # (T or B×T) × rot/2
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)
    else:
        angles = torch.cat([angles, angles], dim=-1)
    cos = angles.cos().to(x.dtype).unsqueeze(-2)  # one value for every head
    sin = angles.sin().to(x.dtype).unsqueeze(-2)
    turned, kept = heads[..., :rot], heads[..., rot:]
    if interleaved:
        pairs = turned.reshape(*turned.shape[:-1], rot // 2, 2)
        partner = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        partner = torch.cat([-turned[..., rot // 2 :], turned[..., : rot // 2]], dim=-1)
    out = torch.cat([turned * cos + partner * sin, kept], dim=-1)
    return out.reshape(b, t, width)


def _check_rotary(head_dim: int, rotary_dim: int | None) -> None:
    rot = head_dim if rotary_dim is None else rotary_dim
    if rot < 2 or rot % 2 or rot > head_dim:
        raise ArgumentError(
            f"rotary_dim {rot} must be even, at least 2 and at most head_dim {head_dim}"
        )


class Rotary(nn.Module):
    """Rotary position embedding (RoPE) of B×T×(heads·head_dim) queries or keys, for
    attention written from Linears and ``ScaledDotProduct``; ``Attention`` does the same
    with ``rope_theta``. ``rotary_dim`` below ``head_dim`` turns only the first features
    of each head (Phi-2); ``interleaved`` pairs neighbours instead of halves. Positions
    are 0 … T-1, or read as a second input (``in: [q, position_ids]``)."""

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        rotary_dim: int | None = None,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        _check_rotary(head_dim, rotary_dim)
        self.head_dim, self.theta, self.rotary_dim = head_dim, theta, rotary_dim
        self.interleaved = interleaved

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(x, "Rotary")
        return rotary(
            x, self.head_dim, self.theta, self.rotary_dim, self.interleaved,
            None if positions is None else _indices(positions, "Rotary"),
        )  # fmt: skip


# -- wrappers ------------------------------------------------------------------------------


class WeightNorm(nn.Module):
    """Its layers with ``weight = g · v / ‖v‖`` (torch's ``weight_norm``
    parametrization, norms over every dim but ``dim``): wav2vec2's positional
    convolution. The layers need their sizes (``in_channels``, not ``auto``), since the
    two tensors are made when the model is built."""

    def __init__(self, body: nn.Module, dim: int = 0, name: str = "weight") -> None:
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm

        self.body, self.dim, self.name = body, dim, name
        targets = self._targets()
        if not targets:
            raise ArgumentError(
                f"WeightNorm found no layer with a `{name}` parameter of known size"
            )
        for module in targets:
            rank = cast(torch.Tensor, module._parameters[name]).dim()
            if not -rank <= dim < rank:
                raise ArgumentError(
                    f"dim {dim} is out of range for {name} of {type(module).__name__}"
                )
            weight_norm(module, name, dim)

    def _targets(self) -> list[nn.Module]:
        targets = []
        for module in self.body.modules():
            if type(module).__name__ == "AutoSized":  # by name: auto.py imports this module
                raise ArgumentError("WeightNorm needs its layers' sizes: give them, not `auto`")
            param = module._parameters.get(self.name)
            if param is None:
                continue
            if nn.parameter.is_lazy(param):
                raise ArgumentError(
                    f"WeightNorm needs its layers' sizes: {type(module).__name__} is lazy"
                )
            targets.append(module)
        return targets

    def reset_parameters(self) -> None:
        """Initialize each layer as it would be without the norm, then split its weight
        into ``g`` and ``v`` again (real weights are allocated empty)."""
        from torch.nn.utils import parametrize
        from torch.nn.utils.parametrizations import weight_norm

        for module in list(self.body.modules()):
            if not parametrize.is_parametrized(module, self.name):
                continue
            originals = cast(Any, module).parametrizations[self.name]
            trainable = bool(originals.original1.requires_grad)
            parametrize.remove_parametrizations(module, self.name)
            plain = getattr(module, self.name).detach()  # left a plain tensor under no_grad
            delattr(module, self.name)
            module.register_parameter(self.name, nn.Parameter(plain, trainable))
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            weight_norm(module, self.name, self.dim)

    def forward(self, *inputs: Any) -> Any:
        return self.body(*inputs)


class MoE(nn.Module):
    """A mixture of experts with top-k routing, as Mixtral's sparse block: a router
    Linear scores each token, softmax, the ``top_k`` best experts are kept and their
    weights renormalized to sum to one (``renormalize: false`` keeps the softmax
    weights), and each token's output is the weighted sum of its experts' outputs.

    ``experts`` is a layer list whose entries are the experts; an entry with
    ``repeat: N`` is N experts. Only routed tokens reach an expert, so the FLOPs are
    those of the routed experts. On the meta device (and with symbolic sizes) there
    are no scores to route by: each expert takes an equal share of the tokens ×
    ``top_k`` routed rows. The MoE's own shapes are what any routing gives; how many
    rows one expert gets is not, and neither are the total FLOPs when the experts cost
    differently per row. So the dry run runs the model again with another ``dealing``
    and reports every size and count that changed as not derived (:mod:`shapecli.routing`).
    """

    #: The shapes inside an MoE depend on values: the router's choice in a real run;
    #: in a run without values, what ``dealing`` says.
    ROUTED_INSIDE: ClassVar[bool] = True
    #: How a run without values deals the rows (set on the instance for one run):
    #: ``even``, the even share; ``other``, each expert another number of rows than its
    #: even share, one a router could give it (all the tokens; one fewer, or none, for an
    #: expert whose share is all of them), wherever the routing leaves it a choice;
    #: ``packed``, a routing as uneven as a router can make (every expert one row, the
    #: rest to the first experts, each up to every token).
    dealing: Literal["even", "other", "packed"] = "even"

    def __init__(self, experts: nn.Module, top_k: int = 2, renormalize: bool = True) -> None:
        super().__init__()
        self.experts = experts
        count = len(self._experts())
        if count < 1:
            raise ArgumentError("MoE needs at least one expert")
        if not 1 <= top_k <= count:
            raise ArgumentError(f"top_k {top_k} must be between 1 and the {count} experts")
        self.top_k, self.renormalize = top_k, renormalize
        self.router = nn.LazyLinear(count, bias=False)

    def _experts(self) -> list[nn.Module]:
        found: list[nn.Module] = []
        for child in self.experts.children():
            found.extend(child.children() if isinstance(child, Repeat) else [child])
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _tensor(x, "MoE")
        if x.dim() < 2:
            raise LayerInputError(f"MoE got {_shape(x)}", "…×features tokens")
        tokens = x.reshape(-1, x.shape[-1])
        probabilities = F.softmax(self.router(tokens), dim=-1, dtype=torch.float32)
        weights, chosen = torch.topk(probabilities, self.top_k, dim=-1)
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        experts = self._experts()
        rows: list[tuple[torch.Tensor, torch.Tensor]]
        if _has_values(tokens):
            rows = [cast(Any, torch.where(chosen == e)) for e in range(len(experts))]
        else:
            rows = self._shares(tokens.shape[0], len(experts), tokens.device)
            warnings.warn(
                "the router chooses by value, and a dry run has none: in the rows inside its "
                "experts, a size that depends on how many rows an expert gets is ? (not "
                "derived), and so are those rows' FLOPs; the MoE's own row and the totals "
                "are exact when its experts cost the same per row (the same for any routing)",
                stacklevel=2,
            )
        out: torch.Tensor | None = None
        for expert, (token, slot) in zip(experts, rows, strict=True):
            y = _output(expert(tokens[token]), "an expert")
            if out is None:
                out = tokens.new_zeros(tokens.shape[0], y.shape[-1])
            out.index_add_(0, token, y * weights[token, slot, None])
        assert out is not None
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def _shares(
        self, count: int, experts: int, device: torch.device
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(token, slot) rows for each expert when no scores exist, as ``dealing`` says:
        evenly, the first experts one more each when they do not divide. With
        ``top_k`` = the number of experts every expert takes every token, whatever the
        scores: that share is the only one."""
        routed = count * self.top_k
        token = torch.arange(count, device=device).repeat(self.top_k)
        slot = torch.arange(self.top_k, device=device).repeat_interleave(count)
        sizes = [routed // experts + (1 if e < routed % experts else 0) for e in range(experts)]
        if self.dealing == "even" or self.top_k == experts:  # then every expert gets all
            return list(zip(torch.split(token, sizes), torch.split(slot, sizes), strict=True))
        if self.dealing == "other":
            sizes = [count if size != count else max(count - 1, 0) for size in sizes]
        else:
            sizes = _packed(routed, experts, count)
        return [(t, torch.zeros_like(t)) for t in (torch.arange(n, device=device) for n in sizes)]


def _packed(routed: int, experts: int, most: int) -> list[int]:
    """``routed`` rows over ``experts``, each at most ``most``: one each (as far as they
    go), then the rest to the first experts, each filled up in turn."""
    sizes = [1 if e < routed else 0 for e in range(experts)]
    rest = routed - sum(sizes)
    for e in range(experts):
        more = min(most - sizes[e], rest)
        sizes[e] += more
        rest -= more
    return sizes


OWN_MODULES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        Sequential, Residual, Parallel, Ref, Reshape, Permute, Transpose, Take, Mean, Select,
        ClassToken, PositionalEmbedding, Attention, Add, Mul, Cat, Stack, MatMul, Param,
        ScaledDotProduct, PositionBuckets, Roll, WindowPartition, WindowMerge,
        RelativePositionBias, Slice, Split, Chunk, Gather, TopK, ArgMax, ArgSort, Noise,
        Expand, ReshapeAs, Scale, Exp, Sum, Normalize, QuickGELU, Positions, Sinusoidal,
        Rotary, WeightNorm, MoE,
    )
}  # fmt: skip
