"""Why a layer could not take its input: what it expected, and what to write instead.

torch's messages describe the failing *operation* (``mat1 and mat2 shapes cannot be
multiplied (2x256 and 30x10)``); users think in *layers*. For the layer kinds that
have a fixed input size, this module states the expectation in the layer's own terms
(``last dim 30 (in_features)``) and names the lazy alternative. torch's message is
always kept below, so an unknown kind still gets an honest error.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from shapecli.report import Shape, format_shape


@dataclass(frozen=True)
class Diagnosis:
    expected: str | None
    hint: str | None


def diagnose(
    module: nn.Module, type_name: str, shapes: tuple[Shape, ...], dtypes: tuple[str, ...]
) -> Diagnosis:
    """The expectation of ``module`` about its first input, and a hint."""
    required = _required_inputs(module)
    if len(shapes) < len(required):
        return Diagnosis(
            f"{len(required)} inputs ({', '.join(required)})",
            "declare one input per tensor: --input … --input …, or a list in `input:`",
        )
    shape = shapes[0] if shapes else ()
    dtype = dtypes[0] if dtypes else ""
    lazy = f"Lazy{type_name}" if not type_name.startswith("Lazy") else type_name
    if isinstance(module, nn.Linear):
        return _last_dim(shape, module.in_features, "in_features", lazy, type_name)
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = len(module.kernel_size)
        expected = (
            f"{dims + 2}-D input (N×C×…) or {dims + 1}-D (C×…) with C = {module.in_channels} "
            "(in_channels)"
        )
        if len(shape) not in (dims + 1, dims + 2):
            return Diagnosis(expected, None)
        channels = shape[1] if len(shape) == dims + 2 else shape[0]
        if channels != module.in_channels:
            return Diagnosis(expected, _lazy_hint(lazy, "in_channels", type_name))
        return Diagnosis(
            f"spatial size at least the dilated kernel ({format_shape(module.kernel_size)}) "
            "after padding",
            "reduce kernel_size or stride, add padding, or feed a larger input",
        )
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return _channel_dim(shape, module.num_features, "num_features", lazy, type_name)
    if isinstance(module, nn.GroupNorm):
        return _channel_dim(shape, module.num_channels, "num_channels", None, type_name)
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
        normalized = tuple(module.normalized_shape)
        return Diagnosis(
            f"trailing dims {format_shape(normalized)} (normalized_shape)",
            f"`{type_name}: auto` takes the size from the input",
        )
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        if not dtype.startswith(("int", "uint")):
            return Diagnosis(
                "integer token ids (int64)",
                "declare the input as integers, e.g. --input 1x1024:long",
            )
        return Diagnosis(f"ids below {module.num_embeddings} (num_embeddings)", None)
    if isinstance(module, nn.MultiheadAttention):
        return _last_dim(shape, module.embed_dim, "embed_dim", None, type_name)
    if isinstance(module, nn.RNNBase):
        return _last_dim(shape, module.input_size, "input_size", None, type_name)
    return Diagnosis(None, None)


def _required_inputs(module: nn.Module) -> list[str]:
    """Names of the tensors ``module.forward`` cannot do without."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _last_dim(shape: Shape, size: int, name: str, lazy: str | None, type_name: str) -> Diagnosis:
    return Diagnosis(f"last dim {size} ({name})", _lazy_hint(lazy, name, type_name))


def _channel_dim(shape: Shape, size: int, name: str, lazy: str | None, type_name: str) -> Diagnosis:
    return Diagnosis(f"dim 1 = {size} ({name})", _lazy_hint(lazy, name, type_name))


def _lazy_hint(lazy: str | None, argument: str, type_name: str) -> str:
    if lazy and hasattr(nn, lazy) and lazy != type_name:
        return f"use `{lazy}` or `{argument}: auto` to take the size from the input"
    return f"use `{argument}: auto` to take the size from the input"
