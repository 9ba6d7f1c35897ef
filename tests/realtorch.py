"""The reference for shapecli's FLOPs and memory figures: torch itself, on the CPU.

    python tests/realtorch.py        # the table of measured ratios docs/analysis.md quotes

Each helper takes a spec (its text, or a path) and its input (a shape like ``2x16:long``,
or one per model input), builds the model with real weights on the CPU
(``shapecli.build``) and measures, with torch's own instruments and none of shapecli's
estimate code:

* **FLOPs**: ``FlopCounterMode`` over one forward pass (eval mode, no gradients: the
  pass ``--flops`` counts);
* **saved for backward**: one forward pass in train mode under saved-tensor hooks, each
  storage once (by its address), the parameters' storages left out — they are counted
  as weights;
* **gradients**: the bytes of every ``.grad`` after a backward pass from the sum of the
  model's floating-point outputs;
* **optimizer state**: the bytes of every tensor in ``optimizer.state`` after one step of
  the real torch optimizer, for each optimizer shapecli names.

:func:`estimate` asks shapecli (``shapecli.inspect`` with ``flops`` and ``memory``) for
the same figures. Everything here is deterministic and meant to be cheap at small
inputs: one build, one counted forward pass, one training step.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.hooks import RemovableHandle

import shapecli
from shapecli.api import _materialize
from shapecli.inputs import parse_input
from shapecli.record import tensors_in
from shapecli.spec.model import Spec
from shapecli.spec.parse import parse_spec
from shapecli.verify import real_inputs

ROOT = Path(__file__).resolve().parent.parent

SpecLike = str | Path
InputLike = str | Sequence[str] | None

#: Each optimizer shapecli estimates, as the real torch optimizer.
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer | None]] = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-3),
    "none": lambda ps: None,
}


@dataclass(frozen=True)
class Figures:
    """FLOPs of one forward pass; bytes of what one training step holds."""

    flops: int | None
    saved: int | None
    gradients: int | None
    optimizer_state: dict[str, int | None]


def _spec(spec: SpecLike, overrides: Mapping[str, Any] | None) -> Spec:
    """A spec from its text (anything with a newline) or a path."""
    if isinstance(spec, str) and "\n" in spec:
        return parse_spec(spec, "spec.yaml", overrides)
    from shapecli.spec.parse import read_spec

    return read_spec(spec, overrides)


def measure(
    spec: SpecLike,
    input: InputLike = None,
    *,
    dtype: str = "float32",
    set: Mapping[str, Any] | None = None,
    optimizers: Sequence[str] = ("adam", "sgd-momentum"),
    calls: dict[tuple[str, int], int] | None = None,
) -> Figures:
    """What torch measures for ``spec`` on the CPU (see the module docstring); with
    ``calls``, the FLOPs of each module call too (see :func:`counted_flops`)."""
    made = _materialize(_spec(spec, set), input, dtype=dtype, seed=0)
    model = made.model
    tensors = real_inputs(model, made.inputs, seed=0, dtype=made.dtype)
    flops = counted_flops(model, tensors, calls)
    saved, outputs = saved_in_training(model, tensors)
    loss = sum((t.float().sum() for t in outputs if t.requires_grad), torch.zeros(()))
    if loss.requires_grad:
        loss.backward()
    gradients = _bytes(p.grad for p in _unique(model.parameters()) if p.grad is not None)
    states = {name: optimizer_state(model, name) for name in optimizers}
    return Figures(flops, saved, gradients, states)


def estimate(
    spec: SpecLike,
    input: InputLike = None,
    *,
    dtype: str = "float32",
    set: Mapping[str, Any] | None = None,
    optimizers: Sequence[str] = ("adam", "sgd-momentum"),
) -> Figures:
    """What shapecli estimates for the same (its dry run on the meta device)."""
    parsed = _spec(spec, set)
    states: dict[str, int | None] = {}
    report = None
    for name in optimizers:
        report = shapecli.inspect(
            parsed, input, flops=True, memory=True, optimizer=name, dtype=dtype
        )
        assert report.ok, [p.headline for p in report.errors]
        assert report.totals.memory is not None
        states[name] = report.totals.memory.optimizer_state
    assert report is not None and report.totals.memory is not None
    memory = report.totals.memory
    return Figures(report.totals.flops, memory.saved_for_backward, memory.gradients, states)


def counted_flops(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    calls: dict[tuple[str, int], int] | None = None,
) -> int:
    """FLOPs of one real forward pass in eval mode, as ``FlopCounterMode`` counts them;
    with ``calls``, also each module's FLOPs per call (its submodules' included), by
    ``(path, n)`` for its n-th call: the counter's running total as each call begins
    and ends, read by module hooks.

    The counter has no formula for the CPU's fused kernels — flash attention for the
    CPU, oneDNN's LSTM, and the inference fast paths of ``MultiheadAttention`` and
    ``TransformerEncoderLayer`` — and counts them as nothing. So the pass runs with
    torch's math attention, without oneDNN when there is an LSTM (oneDNN's
    convolutions are counted, and much faster than the fallback), and with gradients
    enabled, which keeps torch off the fast paths: the same arithmetic in matrix
    products the counter sees, whose count is what torch's own formula for fused
    attention gives."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    onednn = not any(isinstance(m, nn.LSTM) for m in model.modules())
    modes = {id(m): m.training for m in model.modules()}
    counter = FlopCounterMode(display=False)
    hooks = _per_call(model, counter, calls) if calls is not None else []
    try:
        model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setting the oneDNN flags warns of TF32
            with (
                torch.enable_grad(),
                torch.backends.mkldnn.flags(enabled=onednn),
                sdpa_kernel(SDPBackend.MATH),
                counter,
            ):
                model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
        for m in model.modules():
            m.training = modes[id(m)]
    return int(counter.get_total_flops())


def _per_call(
    model: nn.Module, counter: FlopCounterMode, calls: dict[tuple[str, int], int]
) -> list[RemovableHandle]:
    """Hooks that write each module call's FLOPs into ``calls``."""
    handles = []
    for path, module in model.named_modules():
        begun: list[int] = []  # how many calls began (a list: the closures share it)
        open_calls: list[tuple[int, int]] = []  # (call, running total at its start)

        def pre(
            *_: object,
            path: str = path,
            begun: list[int] = begun,
            open_calls: list[tuple[int, int]] = open_calls,
        ) -> None:
            open_calls.append((len(begun), counter.get_total_flops()))
            begun.append(1)

        def post(
            *_: object, path: str = path, open_calls: list[tuple[int, int]] = open_calls
        ) -> None:
            call, start = open_calls.pop()
            calls[path, call] = counter.get_total_flops() - start

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def saved_in_training(
    model: nn.Module, inputs: Sequence[torch.Tensor]
) -> tuple[int, list[torch.Tensor]]:
    """Bytes autograd saves in one real train-mode forward pass (each storage once, by
    address; parameters left out), and the floating-point outputs, for the backward."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        output = model(*inputs)
    return sum(saved.values()), [t for t in tensors_in(output) if t.is_floating_point()]


def optimizer_state(model: nn.Module, name: str) -> int:
    """Bytes of the optimizer's state after one real step (gradients must be set)."""
    trainable = [p for p in _unique(model.parameters()) if p.requires_grad]
    optimizer = OPTIMIZERS[name](trainable) if trainable else None
    if optimizer is None:  # none, or nothing to train (torch's optimizers refuse that)
        return 0
    optimizer.step()
    tensors = (v for state in optimizer.state.values() for v in state.values())
    return _bytes(t for t in tensors if isinstance(t, torch.Tensor))


def _unique(params: Iterator[nn.Parameter]) -> list[nn.Parameter]:
    return list({id(p): p for p in params}.values())


def _bytes(tensors: Iterator[torch.Tensor]) -> int:
    """Bytes of the storages of ``tensors``, each once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


# -- docs/analysis.md's table --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A model docs/analysis.md quotes: a shipped config (or a spec's text) at an input."""

    title: str
    spec: SpecLike
    input: str | None = None
    dtype: str = "float32"
    set: tuple[tuple[str, Any], ...] = ()


CASES = (
    Case("MLP (`mlp.yaml`)", ROOT / "configs/mlp.yaml"),
    Case("CNN (`lenet5.yaml`)", ROOT / "configs/lenet5.yaml", "8x1x32x32"),
    Case("CNN with batch norm (`resnet18.yaml`)", ROOT / "configs/resnet18.yaml", "2x3x32x32"),
    Case(
        "LSTM, oneDNN (`lstm-classifier.yaml`)", ROOT / "configs/lstm-classifier.yaml", "4x32:long"
    ),
    Case(
        "GRU",
        "input: 4x32x16\nmodel:\n  - GRU: {input_size: 16, hidden_size: 64, num_layers: 2,"
        " batch_first: true}\n  - Take: 0\n",
    ),
    Case("attention, flash (`llama-tiny.yaml`)", ROOT / "configs/llama-tiny.yaml"),
    Case(
        "attention, flash, bfloat16 (`llama-tiny.yaml`)",
        ROOT / "configs/llama-tiny.yaml",
        "1x32:long",
        dtype="bfloat16",
    ),
    Case(
        "attention with dropout, math kernel",
        "input: 2x256x64\nmodel:\n  - Attention: {dim: 64, heads: 4, dropout: 0.1}\n",
    ),
    Case(
        "attention, tied head (`gpt2.yaml`, 2 layers of 256)",
        ROOT / "configs/gpt2.yaml",
        "2x128:long",
        set=(("layers", 2), ("d", 256), ("heads", 4), ("vocab", 1000), ("context", 128)),
    ),
)


@functools.cache
def measured(case: Case) -> tuple[Figures, Figures]:
    """(shapecli's estimate, torch's measurement) for a case, once per process."""
    options: dict[str, Any] = {"dtype": case.dtype, "set": dict(case.set) or None}
    return estimate(case.spec, case.input, **options), measure(case.spec, case.input, **options)


def ratio(estimated: int | None, real: int | None) -> str:
    """shapecli's figure over torch's: ``exact`` when they are equal."""
    if estimated is None or real is None:
        return "not derived" if estimated is None else "—"
    return "exact" if estimated == real else f"{estimated / real:.3f}"


def table() -> str:
    """docs/analysis.md's table: shapecli's figure over torch's, per case (with torch's bytes
    saved for backward, for scale)."""
    from shapecli.render.format import nbytes

    lines = [
        "| model | input | saved for backward (torch) | gradients | Adam state | FLOPs |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        ours, real = measured(case)
        given = parse_input(case.input) if case.input else None
        shape = given or _spec(case.spec, dict(case.set) or None).inputs[0]
        dtype = f" {case.dtype}" if case.dtype != "float32" else ""
        lines.append(
            f"| {case.title} | `{shape}`{dtype} "
            f"| {ratio(ours.saved, real.saved)} ({nbytes(real.saved or 0)}) "
            f"| {ratio(ours.gradients, real.gradients)} "
            f"| {ratio(ours.optimizer_state['adam'], real.optimizer_state['adam'])} "
            f"| {ratio(ours.flops, real.flops)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
