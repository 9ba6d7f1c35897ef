"""``--shard``: the training estimate on each device when the model states are sharded.

Sharded data parallelism: every device runs the whole model on an input of its own —
the input given is each device's — and holds a part of the weights, the gradients and
the optimizer state. So what autograd saves, one forward pass's activations and the
buffers (never sharded) are each device's as for one device, and the model states are
divided as the scheme divides them:

============  =======  =========  ===============
scheme        weights  gradients  optimizer state
============  =======  =========  ===============
``fsdp=N``    ÷ N      ÷ N        ÷ N
``zero1=N``   whole    whole      ÷ N
``zero2=N``   whole    ÷ N        ÷ N
``zero3=N``   ÷ N      ÷ N        ÷ N
============  =======  =========  ===============

**fsdp** is torch's FSDP2 (``fully_shard``, no mixed-precision policy): each parameter
is cut on its first dimension into ``torch.chunk``'s pieces, so the first devices hold
⌈rows / N⌉ rows of each (FSDP2 pads every device's copy of the parameters to that);
their gradients and the optimizer's states (made ``like`` the parameters) are cut the
same way, and Adam's step count, a scalar per parameter, is on every device. The
figure is the first device's: the largest. The states are what torch's optimizer keeps
for the model at its own dtype, as ``--memory`` counts them.

**zero1, zero2, zero3** are DeepSpeed's ZeRO stages, as its ZeRO optimizer holds them
(``deepspeed/runtime/zero/stage_1_and_2.py``, ``stage3.py``): its optimizer works on a
32-bit partition of the weights, for every model dtype — so the optimizer state is that
32-bit master copy and each optimizer state in 32 bits (Adam: 4 + 8 bytes per
parameter) — and its step makes a 32-bit copy of the gradient partition, counted with
the gradients (its estimators count it too); gradients are kept in the model's dtype
(DeepSpeed's default under ZeRO). Stages 1 and 2 partition the concatenation of the
trainable parameters, padded to a multiple of 2N elements; stage 3 partitions each
parameter, ⌈elements / N⌉ on each device.

**Not modelled** (the footer says so): the parameters and gradients a unit gathers
whole while it computes (FSDP's all-gather and reduce-scatter buffers; DeepSpeed's
ZeRO-3 estimator adds 4 bytes × the largest layer's parameters for them) and the
communication buckets. ``tests/test_sharding.py`` checks the division against
DeepSpeed's published estimators, and ``tests/test_distributed.py`` the fsdp figures
against two processes training with ``fully_shard`` on the CPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from shapecli.analyses.base import Done
from shapecli.analyses.training import Training, figures_sum
from shapecli.errors import did_you_mean, fail
from shapecli.report import Memory, PerDevice, Report

if TYPE_CHECKING:
    from torch import nn

Scheme = Literal["fsdp", "zero1", "zero2", "zero3"]
SCHEMES: tuple[Scheme, ...] = ("fsdp", "zero1", "zero2", "zero3")
#: The most devices ``--shard`` takes: more than any machine room holds.
MAX_DEVICES = 1_000_000

#: A parameter as dividing it needs it: its shape and bytes per element.
Held = tuple[tuple[int, ...], int]

_WHAT = {
    "fsdp": "torch's fully_shard",
    "zero1": "DeepSpeed ZeRO stage 1",
    "zero2": "DeepSpeed ZeRO stage 2",
    "zero3": "DeepSpeed ZeRO stage 3",
}
_NOT_MODELLED = {
    "fsdp": "the parameters and gradients of the unit that computes, gathered whole "
    "(FSDP's all-gather and reduce-scatter buffers), and communication buffers",
    "zero1": "communication buckets",
    "zero2": "communication buckets",
    "zero3": "the parameters and gradients of the layer that computes, gathered whole "
    "(DeepSpeed's estimator adds 4 bytes × its largest layer's parameters), and "
    "communication buckets",
}


@dataclass(frozen=True)
class Shard:
    """How the model states are divided: a scheme over ``devices`` devices."""

    scheme: Scheme
    devices: int

    def __str__(self) -> str:
        return f"{self.scheme}={self.devices}"


def parse_shard(text: str) -> Shard:
    """``fsdp=8``, ``zero2=8`` → a :class:`Shard` (``usage`` if it is not one)."""
    name, sep, count = text.strip().partition("=")
    if name == "zero" and sep:
        raise fail(
            "usage",
            f"--shard {text}: name the stage and the number of devices, e.g. zero{count}=8 "
            f"(DeepSpeed ZeRO stage {count} over 8 devices)",
        )
    if name not in SCHEMES or not re.fullmatch(r"[0-9]{1,7}", count):
        near = did_you_mean(name, SCHEMES) if name not in SCHEMES else ""
        raise fail(
            "usage",
            f"--shard {text!r}: write SCHEME=DEVICES, the scheme one of "
            f"{', '.join(SCHEMES)}{near}, e.g. fsdp=8",
        )
    devices = int(count)
    if not 1 <= devices <= MAX_DEVICES:
        raise fail("usage", f"--shard {text}: the number of devices is from 1 to {MAX_DEVICES:,}")
    return Shard(name, devices)


@dataclass(frozen=True)
class Sharding(Training):
    """``--memory --shard``: the training estimate, and each device's part of it."""

    shard: Shard = Shard("fsdp", 1)

    def after(self, done: Done) -> Report:
        report, step = self.estimate(done)
        memory = report.totals.memory
        if step is None or memory is None:
            return report
        every = _parameters(done.built.model)
        trainable = tuple(held for held, grad in every if grad)
        weights = tuple(held for held, _ in every)
        per_device = divide(self.shard, memory, weights, trainable, step.trained)
        memory = replace(memory, per_device=per_device)
        return replace(report, totals=replace(report.totals, memory=memory))

    @staticmethod
    def footer(report: Report) -> list[str]:
        memory = report.totals.memory
        device = memory.per_device if memory is not None else None
        if device is None or device.training_peak is None:
            return []
        scheme, _, count = device.shard.partition("=")
        over = f"{count} device{'s' * (count != '1')}"
        return [
            f"Training memory per device, {device.shard} ({_WHAT[scheme]} over {over}, "
            f"each running the input above): {figures_sum(device)}",
            f"  not modelled: {_NOT_MODELLED[scheme]}",
        ]


def _parameters(model: nn.Module) -> tuple[tuple[Held, bool], ...]:
    """Every parameter once: (shape, bytes per element), and whether it is trainable."""
    unique = {id(p): p for p in model.parameters()}.values()
    return tuple(((tuple(p.shape), p.element_size()), p.requires_grad) for p in unique)


def divide(
    shard: Shard,
    memory: Memory,
    weights: tuple[Held, ...],
    trainable: tuple[Held, ...],
    reached: tuple[Held, ...],
) -> PerDevice:
    """Each device's figures (see the module docstring): ``weights`` is every parameter
    once, ``trainable`` those that train, ``reached`` those the loss reaches (which get
    gradients and state in torch's optimizer)."""
    from shapecli.memory import OPTIMIZER_STATES, STEP_BYTES

    optimizer = memory.optimizer or "none"
    states = OPTIMIZER_STATES[optimizer]
    n = shard.devices
    if shard.scheme == "fsdp":
        part = [(_fsdp_part(shape, n), size) for shape, size in reached]
        gradients = sum(e * size for e, size in part)
        optimizer_state = sum(states * e * size + STEP_BYTES.get(optimizer, 0) for e, size in part)
        weights_bytes = sum(_fsdp_part(shape, n) * size for shape, size in weights)
    else:
        stage = int(shard.scheme[-1])
        elements = sum(math.prod(shape) for shape, _ in trainable)
        mine = (
            sum(-(-math.prod(shape) // n) for shape, _ in trainable)
            if stage == 3
            else _flat_part(elements, n)
        )
        kept = _kept_gradients(stage, trainable, n)
        extra = 4 * mine if optimizer != "none" else 0  # the step's 32-bit gradient copy
        gradients = kept + extra
        optimizer_state = (4 + 4 * states) * mine if optimizer != "none" else 0
        weights_bytes = (
            sum(-(-math.prod(shape) // n) * size for shape, size in weights)
            if stage == 3
            else memory.params
        )
    return PerDevice(
        params=weights_bytes,
        buffers=memory.buffers,
        forward_activations=memory.forward_activations,
        gradients=gradients,
        optimizer=memory.optimizer,
        optimizer_state=optimizer_state,
        saved_for_backward=memory.saved_for_backward,
        shard=str(shard),
    )


def _fsdp_part(shape: tuple[int, ...], devices: int) -> int:
    """Elements of the first device's shard of a parameter: FSDP2 cuts it on its first
    dimension as ``torch.chunk`` does (a scalar is one row)."""
    rows = shape[0] if shape else 1
    return -(-rows // devices) * math.prod(shape[1:])


def _flat_part(elements: int, devices: int) -> int:
    """Elements of one partition in ZeRO stages 1 and 2: the concatenation is padded to
    a multiple of 2 × devices (``nccl_start_alignment_factor``), then cut in equal parts."""
    return -(-elements // (2 * devices)) * 2


def _kept_gradients(stage: int, trainable: tuple[Held, ...], devices: int) -> int:
    """Bytes of gradients in the model's dtype each device keeps at a ZeRO stage."""
    if stage == 1:
        return sum(math.prod(shape) * size for shape, size in trainable)
    if stage == 3:
        return sum(-(-math.prod(shape) // devices) * size for shape, size in trainable)
    by_size: dict[int, int] = {}  # a flat buffer per dtype
    for shape, size in trainable:
        by_size[size] = by_size.get(size, 0) + math.prod(shape)
    return sum(_flat_part(elements, devices) * size for size, elements in by_size.items())
