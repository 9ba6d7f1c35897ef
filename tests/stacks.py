"""Random layer stacks for differential tests: a hypothesis strategy of specs.

:func:`stacks` draws a :class:`Stack` — YAML spec text and an input declaration with
symbolic sizes (``Bx3xHxW``, ``BxTx8``, or two named inputs that broadcast) — made
of the layers whose shapes are easy to get wrong: convolutions with stride, padding
(``same`` included), dilation and reflection padding; pools with and without
``ceil_mode``; upsampling; transposed convolutions; flatten, reshape and transpose into
attention; residual adds, broadcasting ``Param``s and ``Parallel`` merges (``cat``,
``add``, ``mul``, ``stack``). The spec's own ``input:`` has concrete sizes, which
symbolic inspection takes as its samples; :func:`concrete` gives the input at any sizes.

A stack unpacks as ``spec, input = stack``. Most stacks work at their own input; some
do not (a pool past the size left), which is a case worth testing too.

:func:`training_stacks` draws a :class:`TrainingStack` — a spec with a concrete input
and a dtype — made of what a training step keeps that shapes do not show: dropout
masks, recurrent layers, attention with each CPU kernel, norms over transposed
tensors, frozen, repeated and shared layers. Nothing here runs anything: properties
over FLOPs, memory or formulas are built on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hypothesis import strategies as st


class Stack(NamedTuple):
    """A spec (YAML text) and a symbolic input declaration for it (``--input``)."""

    spec: str
    input: str | tuple[str, ...]


def concrete(stack: Stack, sizes: dict[str, int]) -> str | list[str]:
    """``stack``'s input with every symbol at its size in ``sizes``."""

    def one(declaration: str) -> str:
        name, eq, shape = declaration.rpartition("=")
        dims, colon, dtype = shape.partition(":")
        fixed = "x".join(str(sizes.get(d, d)) for d in dims.split("x"))
        return f"{name}{eq}{fixed}{colon}{dtype}"

    if isinstance(stack.input, str):
        return one(stack.input)
    return [one(d) for d in stack.input]


@dataclass
class _Image:
    """What a layer stack over images has made so far."""

    channels: int
    entries: list[str]
    count: int = 0

    def name(self) -> str:
        self.count += 1
        return f"n{self.count}"


def _entry(text: str) -> str:
    return f"  - {text}\n"


def _conv(draw: st.DrawFn, image: _Image) -> None:
    out = draw(st.sampled_from([4, 6, 8]))
    kernel = draw(st.integers(1, 5))
    if draw(st.booleans()) and kernel > 1:
        dilation = draw(st.integers(1, 2))
        image.entries.append(
            _entry(
                f"Conv2d: {{in_channels: {image.channels}, out_channels: {out}, kernel_size: "
                f"{kernel}, padding: same, dilation: {dilation}}}"
            )
        )
    else:
        stride = draw(st.integers(1, 2))
        padding = draw(st.integers(0, kernel // 2 + 1))
        dilation = draw(st.integers(1, 2))
        mode = draw(st.sampled_from(["zeros", "zeros", "reflect"])) if padding else "zeros"
        image.entries.append(
            _entry(
                f"LazyConv2d: {{out_channels: {out}, kernel_size: {kernel}, stride: {stride}, "
                f"padding: {padding}, dilation: {dilation}, padding_mode: {mode}}}"
            )
        )
    image.channels = out


def _pool(draw: st.DrawFn, image: _Image) -> None:
    kind = draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
    kernel = draw(st.integers(2, 3))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, kernel // 2))
    ceil = draw(st.booleans())
    image.entries.append(
        _entry(
            f"{kind}: {{kernel_size: {kernel}, stride: {stride}, padding: {padding}, "
            f"ceil_mode: {str(ceil).lower()}}}"
        )
    )


def _upsample(draw: st.DrawFn, image: _Image) -> None:
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    image.entries.append(_entry(f"Upsample: {{scale_factor: 2, mode: {mode}}}"))


def _transposed(draw: st.DrawFn, image: _Image) -> None:
    out = draw(st.sampled_from([4, 8]))
    kernel = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, (kernel - 1) // 2))
    extra = draw(st.integers(0, stride - 1))
    image.entries.append(
        _entry(
            f"LazyConvTranspose2d: {{out_channels: {out}, kernel_size: {kernel}, stride: "
            f"{stride}, padding: {padding}, output_padding: {extra}}}"
        )
    )
    image.channels = out


def _elementwise(draw: st.DrawFn, image: _Image) -> None:
    image.entries.append(_entry(draw(st.sampled_from(["ReLU", "GELU", "LazyBatchNorm2d"]))))


def _residual(draw: st.DrawFn, image: _Image) -> None:
    c = image.channels
    image.entries.append(
        _entry(
            f"Residual: [{{Conv2d: {{in_channels: {c}, out_channels: {c}, kernel_size: 3, padding: 1}}}}]"
        )
    )


def _broadcast(draw: st.DrawFn, image: _Image) -> None:
    """A learned per-channel tensor added (or multiplied) to the map: it broadcasts."""
    here, param = image.name(), image.name()
    op = draw(st.sampled_from(["Add", "Mul"]))
    if not image.entries:
        image.entries.append(_entry("Identity"))
    first, newline, rest = image.entries[-1].partition("\n")
    if ":" not in first:  # a bare type takes keys in its colon form: `- ReLU:`
        first += ":"
    image.entries[-1] = f"{first}{newline}{rest}    name: {here}\n"
    image.entries.append(
        _entry(f"Param: {{shape: [1, {image.channels}, 1, 1]}}") + f"    name: {param}\n"
    )
    image.entries.append(_entry(f"{op}:") + f"    in: [{here}, {param}]\n")


def _parallel(draw: st.DrawFn, image: _Image) -> None:
    merge = draw(st.sampled_from(["cat", "add", "mul", "stack"]))
    a, b = (draw(st.sampled_from([4, 8])) for _ in range(2))
    if merge != "cat":
        b = a
    kernel = draw(st.sampled_from([1, 3]))
    branch = "[{{LazyConv2d: {{out_channels: {}, kernel_size: {}, padding: {}}}}}]"
    branches = ", ".join(branch.format(n, kernel, kernel // 2) for n in (a, b))
    image.entries.append(_entry(f"Parallel: {{branches: [{branches}], merge: {merge}, dim: 1}}"))
    if merge == "stack":  # B×2×C×H×W: back to four dimensions
        image.entries.append(_entry("Flatten: {start_dim: 1, end_dim: 2}"))
        image.channels = 2 * a
    else:
        image.channels = a + b if merge == "cat" else a


IMAGE_LAYERS = (
    _conv,
    _conv,
    _pool,
    _pool,
    _upsample,
    _transposed,
    _elementwise,
    _residual,
    _broadcast,
    _parallel,
)


def _image_tail(draw: st.DrawFn, image: _Image) -> None:
    """How an image stack may end: as it is, pooled to a vector, or as tokens for attention."""
    tail = draw(st.sampled_from(["none", "head", "attention", "reshape"]))
    if tail == "head":
        image.entries += [
            _entry("AdaptiveAvgPool2d: 1"),
            _entry("Flatten"),
            _entry("LazyLinear: 5"),
        ]
    elif tail == "attention":
        heads = draw(st.sampled_from([h for h in (1, 2, 4) if image.channels % h == 0]))
        causal = str(draw(st.booleans())).lower()
        image.entries += [
            _entry("Flatten: {start_dim: 2}"),
            _entry("Transpose: [1, 2]"),
            _entry(f"Attention: {{dim: auto, heads: {heads}, causal: {causal}}}"),
        ]
    elif tail == "reshape":
        image.entries.append(_entry(f"Reshape: [{image.channels}, -1]"))


@st.composite
def image_stacks(draw: st.DrawFn) -> Stack:
    """B×3×H×W through 1 to 5 image layers, and a tail."""
    image = _Image(3, [])
    for _ in range(draw(st.integers(1, 5))):
        draw(st.sampled_from(IMAGE_LAYERS))(draw, image)
    _image_tail(draw, image)
    h, w = draw(st.integers(24, 64)), draw(st.integers(24, 64))
    spec = f"input: 2x3x{h}x{w}\nmodel:\n" + "".join(image.entries)
    return Stack(spec, "Bx3xHxW")


@st.composite
def sequence_stacks(draw: st.DrawFn) -> Stack:
    """B×T×8 through linear layers, norms, attention, a 1-D convolution over T, a
    learned position table (T has an upper bound), and a pooling mean."""
    width = 8
    entries = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["linear", "norm", "attention", "conv", "positions"]))
        if kind == "linear":
            width = draw(st.sampled_from([4, 8, 12]))
            entries.append(_entry(f"LazyLinear: {width}"))
        elif kind == "norm":
            entries.append(_entry("LayerNorm: auto"))
        elif kind == "attention":
            heads = draw(st.sampled_from([h for h in (1, 2, 4) if width % h == 0]))
            entries.append(
                _entry(
                    f"Attention: {{dim: auto, heads: {heads}, causal: {str(draw(st.booleans())).lower()}}}"
                )
            )
        elif kind == "conv":
            kernel, stride = draw(st.integers(1, 4)), draw(st.integers(1, 3))
            padding = draw(st.integers(0, kernel // 2))
            entries += [
                _entry("Transpose: [1, 2]"),
                _entry(
                    f"LazyConv1d: {{out_channels: {width}, kernel_size: {kernel}, stride: {stride}, padding: {padding}}}"
                ),
                _entry("Transpose: [1, 2]"),
            ]
        else:
            entries.append(_entry(f"PositionalEmbedding: [{draw(st.integers(20, 80))}, {width}]"))
    if draw(st.booleans()):
        entries.append(_entry("Mean: {dim: 1}"))
    t = draw(st.integers(8, 20))
    spec = f"input: 2x{t}x8\nmodel:\n" + "".join(entries)
    return Stack(spec, "BxTx8")


@st.composite
def broadcast_stacks(draw: st.DrawFn) -> Stack:
    """Two named inputs B×S×4 and B×T×4 (or B×1×4) combined elementwise or joined."""
    op = draw(st.sampled_from(["Add", "Mul", "Cat: 1", "Stack: 1"]))
    second = draw(st.sampled_from(["BxTx4", "Bx1x4", "BxSx4"]))
    entries = _entry(f"{op}" + ("" if ":" in op else ":")) + "    in: [a, b]\n"
    spec = f"input: {{a: 2x6x4, b: 2x{6 if 'T' in second or 'S' in second else 1}x4}}\nmodel:\n{entries}"
    return Stack(spec, ("a=BxSx4", f"b={second}"))


def stacks() -> st.SearchStrategy[Stack]:
    """Any of the stacks above; images most often."""
    return st.one_of(image_stacks(), image_stacks(), sequence_stacks(), broadcast_stacks())


class TrainingStack(NamedTuple):
    """A spec (YAML text, its own input concrete) and the dtype to build it in (``--dtype``)."""

    spec: str
    dtype: str


@dataclass
class _Tokens:
    """What a layer stack over B×T×width has made so far; ``linears``: the named square
    linear layers a ``Ref`` may call again, by width."""

    width: int
    entries: list[str]
    linears: dict[int, list[str]]


def _keys(**keys: object) -> str:
    """An entry's reserved keys (``name``, ``trainable``, ``repeat``), each on its line."""
    return "".join(f"    {key}: {value}\n" for key, value in keys.items() if value is not None)


def _linear(draw: st.DrawFn, tokens: _Tokens) -> None:
    width = draw(st.sampled_from([4, 8, 12]))
    frozen = "false" if draw(st.integers(0, 4)) == 0 else None
    name = None
    if width == tokens.width and draw(st.booleans()):
        name = f"l{sum(len(v) for v in tokens.linears.values()) + 1}"
        tokens.linears.setdefault(width, []).append(name)
    bias = str(draw(st.booleans())).lower()
    line = f"Linear: {{in_features: {tokens.width}, out_features: {width}, bias: {bias}}}"
    tokens.entries.append(_entry(line) + _keys(name=name, trainable=frozen))
    tokens.width = width


def _ref(draw: st.DrawFn, tokens: _Tokens) -> None:
    """The same module called again (shared weights, a second call of its row)."""
    names = tokens.linears.get(tokens.width)
    if names:
        tokens.entries.append(_entry(f"Ref: {draw(st.sampled_from(names))}"))


def _repeat(draw: st.DrawFn, tokens: _Tokens) -> None:
    w = tokens.width
    tokens.entries.append(_entry(f"Linear: [{w}, {w}]") + _keys(repeat=draw(st.integers(1, 3))))


def _activation(draw: st.DrawFn, tokens: _Tokens) -> None:
    kinds = ["ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Mish", "ELU", "LeakyReLU"]
    tokens.entries.append(_entry(draw(st.sampled_from([*kinds, "Softmax: -1", "LogSoftmax: -1"]))))


def _dropout(draw: st.DrawFn, tokens: _Tokens) -> None:
    tokens.entries.append(_entry(f"Dropout: {draw(st.sampled_from([0.1, 0.5]))}"))


def _norm(draw: st.DrawFn, tokens: _Tokens) -> None:
    kind = draw(st.sampled_from(["layer", "rms", "batch"]))
    if kind == "layer":
        tokens.entries.append(_entry("LayerNorm: auto"))
    elif kind == "rms":
        tokens.entries.append(_entry(f"RMSNorm: {tokens.width}"))
    else:
        tokens.entries += [
            _entry("Transpose: [1, 2]"),
            _entry("LazyBatchNorm1d"),
            _entry("Transpose: [1, 2]"),
        ]


def _attention(draw: st.DrawFn, tokens: _Tokens) -> None:
    """Without dropout torch runs the CPU's flash attention, with it the math kernel."""
    heads = draw(st.sampled_from([h for h in (1, 2, 4) if tokens.width % h == 0]))
    causal = str(draw(st.booleans())).lower()
    dropout = draw(st.sampled_from([0.0, 0.0, 0.1]))
    tokens.entries.append(
        _entry(f"Attention: {{dim: auto, heads: {heads}, causal: {causal}, dropout: {dropout}}}")
    )


def _recurrent(draw: st.DrawFn, tokens: _Tokens) -> None:
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    hidden = draw(st.sampled_from([4, 8]))
    layers = draw(st.integers(1, 2))
    both = draw(st.booleans())
    dropout = ", dropout: 0.2" if layers > 1 and draw(st.booleans()) else ""
    tokens.entries += [
        _entry(
            f"{kind}: {{input_size: {tokens.width}, hidden_size: {hidden}, num_layers: {layers}, "
            f"bidirectional: {str(both).lower()}, batch_first: true{dropout}}}"
        ),
        _entry("Take: 0"),
    ]
    tokens.width = hidden * (2 if both else 1)


def _residual_tokens(draw: st.DrawFn, tokens: _Tokens) -> None:
    w = tokens.width
    inner = draw(st.sampled_from(["GELU", "Dropout: 0.1", "LayerNorm: auto"]))
    tokens.entries.append(_entry(f"Residual: [{{Linear: [{w}, {w}]}}, {{{inner}}}]"))


def _conv_tokens(draw: st.DrawFn, tokens: _Tokens) -> None:
    kernel = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, tokens.width]))
    tokens.entries += [
        _entry("Transpose: [1, 2]"),
        _entry(
            f"Conv1d: {{in_channels: {tokens.width}, out_channels: {tokens.width}, "
            f"kernel_size: {kernel}, padding: {kernel // 2}, groups: {groups}}}"
        ),
        _entry("Transpose: [1, 2]"),
    ]


TOKEN_LAYERS = (
    _linear,
    _linear,
    _ref,
    _repeat,
    _activation,
    _dropout,
    _norm,
    _attention,
    _recurrent,
    _residual_tokens,
    _conv_tokens,
)


@st.composite
def training_stacks(draw: st.DrawFn) -> TrainingStack:
    """What a training step keeps, over B×T×8 features or B×T token ids (an embedding
    first): dropout (its masks), recurrent layers (oneDNN's LSTM workspace), attention
    with the flash and the math kernel, norms, frozen layers, repeats and a ``Ref`` that
    calls a layer twice — in float32, bfloat16 or float64. The input is concrete."""
    t = draw(st.integers(4, 16))
    if draw(st.booleans()):
        head, entries = f"input: 2x{t}x8\n", []
    else:
        padding = ", padding_idx: 0" if draw(st.booleans()) else ""
        head = f"input: 2x{t}:long\n"
        entries = [_entry(f"Embedding: {{num_embeddings: 30, embedding_dim: 8{padding}}}")]
    tokens = _Tokens(8, entries, {})
    for _ in range(draw(st.integers(1, 6))):
        draw(st.sampled_from(TOKEN_LAYERS))(draw, tokens)
    if draw(st.booleans()) or not tokens.entries:
        tokens.entries.append(_entry("Mean: {dim: 1}"))
    dtype = draw(st.sampled_from(["float32", "float32", "bfloat16", "float64"]))
    return TrainingStack(head + "model:\n" + "".join(tokens.entries), dtype)
