"""What a model costs to hold and to train, estimated from the meta device.

Every figure is an estimate with a formula (the README lists them):

* **params**, **buffers** — each tensor once (tied ones too), at its dtype;
* **forward activations** — what every leaf module returned in one inference pass;
* **gradients** — one per trainable parameter, at its dtype;
* **optimizer state** — per trainable parameter, in float32: Adam and AdamW keep two
  (the moving averages), SGD with momentum one, plain SGD none;
* **saved for backward** — the tensors autograd actually saves in one train-mode
  forward pass, as its saved-tensor hooks see them on the meta device: each storage
  once (a view shares its tensor's storage), parameters left out (they are counted
  above). This is what a real training step holds between forward and backward;
  ``tests/test_memory.py`` measures the same on the CPU and finds the same bytes.

The training peak is their sum: weights, gradients, optimizer state and the saved
activations all alive when the backward pass begins.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: float32 states kept per trainable parameter.
OPTIMIZER_STATES: dict[str, int] = {
    "adam": 2,
    "adamw": 2,
    "sgd-momentum": 1,
    "sgd": 0,
    "none": 0,
}


def optimizer_bytes(optimizer: str, trainable: int) -> int:
    return OPTIMIZER_STATES[optimizer] * 4 * trainable


def gradient_bytes(model: nn.Module) -> int:
    unique = {id(p): p for p in model.parameters() if p.requires_grad}
    return sum(p.numel() * p.element_size() for p in unique.values())


def buffer_bytes(model: nn.Module) -> int:
    unique = {id(b): b for b in model.buffers()}
    return sum(b.numel() * b.element_size() for b in unique.values())


def saved_for_backward(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Bytes autograd saves in one train-mode forward pass, each storage once,
    parameters left out. The model's modes are restored afterwards."""
    parameters = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in parameters:
            saved.setdefault(storage._cdata, storage.nbytes())
        return tensor

    modes = {id(m): m.training for m in model.modules()}
    try:
        model.train()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            model(*inputs)
    finally:
        for module in model.modules():
            module.training = modes.get(id(module), module.training)
    return sum(saved.values())


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor
