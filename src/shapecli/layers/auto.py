"""``auto`` input sizes: lazy initialization for every layer, not only ``Lazy*`` ones.

PyTorch ships lazy versions of a few layers. shapecli lets any input-size argument be
``auto`` instead: the layer is built by the first forward pass, from the input it sees —
``in_features``, ``normalized_shape``, ``embed_dim``, ``input_size`` and ``d_model`` from
the last dimension; ``in_channels``, ``num_features`` and ``num_channels`` from
dimension 1. shapecli's own layers declare theirs in a class attribute ``AUTO``.

:class:`AutoSized` is the placeholder until then. On its first call it constructs the
real layer and *becomes* it — the same object, now of the real class — so module paths,
registered hooks and parent containers never notice; ``torch.nn``'s own lazy modules
change class the same way (``cls_to_become``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from shapecli.layers.own import LayerInputError
from shapecli.spec.model import AUTO

#: Which dimension of the first input fills each auto-capable argument.
AUTO_RULES: dict[str, str] = {
    "in_features": "last",
    "normalized_shape": "last",
    "embed_dim": "last",
    "input_size": "last",
    "d_model": "last",
    "in_channels": "channel",
    "num_features": "channel",
    "num_channels": "channel",
}


def auto_rules(cls: type) -> dict[str, str]:
    """The auto-capable arguments of ``cls``."""
    return {**AUTO_RULES, **getattr(cls, "AUTO", {})}


def built_for(module: nn.Module) -> tuple[str, str, int | tuple[int, ...]] | None:
    """The input size ``module`` was built for, read by the same table ``auto`` fills
    sizes from: ``("in_features", "last", 20)`` for a ``Linear(20, …)``, or None for a
    layer whose input size is not one of its arguments."""
    for name, rule in auto_rules(type(module)).items():
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return name, rule, value
        if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
            return name, rule, value  # LayerNorm's normalized_shape: the trailing dims
    return None


def size_from(x: torch.Tensor, rule: str) -> int:
    """The size ``rule`` reads from ``x``."""
    if rule == "channel":
        if x.dim() < 2:
            raise LayerInputError(
                f"cannot take a channel count from a {x.dim()}-D input", "an N×C×… input"
            )
        return int(x.shape[1])
    if x.dim() < 1:
        raise LayerInputError("cannot take a size from a scalar", "at least a 1-D input")
    return int(x.shape[-1])


class AutoBuildError(Exception):
    """The layer refused the sizes ``auto`` read from its input (Attention's ``dim`` 32
    with ``heads`` 5): neither the input nor the arguments alone are wrong, so the dry
    run reports which sizes were filled in, with the constructor's own error."""

    def __init__(self, sizes: dict[str, int], error: Exception) -> None:
        super().__init__(str(error))
        self.sizes = sizes
        self.error = error


class AutoSized(nn.Module):
    """A layer whose ``auto`` arguments are filled from its first input."""

    def __init__(self, cls: type[nn.Module], bound: inspect.BoundArguments, frozen: bool) -> None:
        super().__init__()
        self.cls = cls
        self.bound = bound
        self.frozen = frozen
        rules = auto_rules(cls)
        self.auto = {name: rules[name] for name, v in bound.arguments.items() if v is AUTO}

    def forward(self, *inputs: Any, **keywords: Any) -> Any:
        x = inputs[0] if inputs else self._first_keyword(keywords)
        if not isinstance(x, torch.Tensor):
            raise LayerInputError("an `auto` size needs a tensor input", "a tensor")
        arguments = self.bound.arguments
        for name, rule in self.auto.items():
            arguments[name] = size_from(x, rule)
        try:
            with torch.device(x.device):
                real = self.cls(*self.bound.args, **self.bound.kwargs)
        except Exception as e:  # a constructor may raise anything
            raise AutoBuildError({name: arguments[name] for name in self.auto}, e) from e
        real.train(self.training)
        if self.frozen:
            for param in real.parameters():
                param.requires_grad = False
        become(self, real)
        return type(self).forward(self, *inputs, **keywords)

    def _first_keyword(self, keywords: dict[str, Any]) -> Any:
        """The main input when every input is passed by keyword: the first of the real
        layer's ``forward`` parameters that was given."""
        try:
            order = list(inspect.signature(self.cls.forward).parameters)
        except (TypeError, ValueError):
            order = []
        for name in [*order, *keywords]:
            if name in keywords:
                return keywords[name]
        return None

    def extra_repr(self) -> str:
        return f"{self.cls.__name__}, auto: {', '.join(self.auto)}"


def become(placeholder: nn.Module, real: nn.Module) -> None:
    """Turn ``placeholder`` into ``real`` in place, keeping its hooks (registered by
    whoever is watching the model) and its train/eval mode."""
    kept = {k: v for k, v in vars(placeholder).items() if "hook" in k or k == "training"}
    state = vars(placeholder)
    state.clear()
    state.update(vars(real))
    state.update(kept)
    placeholder.__class__ = real.__class__
