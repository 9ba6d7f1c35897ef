"""What a model costs to hold and to train, estimated without allocating it.

Every figure has a formula (docs/analysis.md lists them):

* **params**, **buffers** — each tensor once (tied ones too), at its dtype;
* **forward activations** — what every leaf module returned in one inference pass;
* **saved for backward**, **gradients**, **optimizer state** — what one training step
  on the CPU holds when its backward pass begins, from :func:`training_step`.

The training peak is their sum: weights, gradients, optimizer state and the saved
activations are all alive when the backward pass begins.

**Which kernels.** What autograd saves depends on the kernel that runs, and torch
chooses kernels by device: on the CPU, attention runs flash attention for the CPU when
it can (it keeps q, k, v, the output and one log-sum-exp per row, not the T×T weights of
the reference kernel the meta device runs), and an LSTM runs oneDNN's fused layer (which
keeps a workspace of every gate of every step). So the training pass does not run on the
meta device but on fake CPU tensors (``FakeTensorMode``: a device, shapes and dtypes, no
memory), and torch's dispatcher chooses each kernel exactly as for real CPU tensors of
those shapes. Where a fake kernel makes a tensor of another size than the CPU's kernel
— oneDNN's LSTM workspace, which it leaves empty; EmbeddingBag's map from indices to
bags, whose CPU storage has one element more — it is given the CPU's size
(:func:`onednn_lstm_workspace` sizes the workspace as oneDNN does); where it lays a
tensor out unlike the CPU's — batch norm's output, which the CPU makes contiguous — it
is given the CPU's layout, since what a later layer copies depends on it.
A figure that is not modelled (that workspace outside float32, that layout for some
unusual ones) raises :class:`NotDerived`, and the estimate says so instead of printing a
wrong number.

Two parts of torch used here are private: ``FakeTensorMode`` and ``TorchDispatchMode``
(the ground torch's own compiler stands on). Should a release change them, the training
pass fails and the estimate is left out with a warning; ``tests/test_memory.py``
compares every figure with real steps on each torch the tests run on.

``tests/realtorch.py`` measures the same quantities in real CPU training steps, and
``tests/test_memory.py`` holds every figure to them.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode  # private: see the docstring

from shapecli.observe import observe
from shapecli.record import tensors_in

#: States kept per trainable parameter, each the parameter's shape and dtype (torch's
#: Adam and AdamW: ``exp_avg`` and ``exp_avg_sq``, made with ``zeros_like``; SGD with
#: momentum: ``momentum_buffer``, a clone of the gradient).
OPTIMIZER_STATES: dict[str, int] = {
    "adam": 2,
    "adamw": 2,
    "sgd-momentum": 1,
    "sgd": 0,
    "none": 0,
}

#: Adam and AdamW also count their steps, in one float32 scalar tensor per parameter.
STEP_BYTES: dict[str, int] = {"adam": 4, "adamw": 4}


class NotDerived(Exception):
    """The estimate does not model what this model would do: no figure, and why."""


@dataclass(frozen=True)
class Step:
    """What one CPU training step holds when its backward pass begins.

    ``saved``: bytes autograd saves, each storage once, parameters left out (they are
    counted as weights). ``trained``: each parameter the loss reaches (the ones that
    get a gradient, and so optimizer state), once, as (shape, bytes per element).
    """

    saved: int
    trained: tuple[tuple[tuple[int, ...], int], ...]

    @property
    def gradient_bytes(self) -> int:
        return sum(math.prod(shape) * size for shape, size in self.trained)

    def optimizer_bytes(self, optimizer: str) -> int:
        """The optimizer's state after its first step: each state in its parameter's
        dtype, as torch keeps it."""
        states, step = OPTIMIZER_STATES[optimizer], STEP_BYTES.get(optimizer, 0)
        return sum(states * math.prod(shape) * size + step for shape, size in self.trained)


def buffer_bytes(model: nn.Module) -> int:
    unique = {id(b): b for b in model.buffers()}
    return sum(b.numel() * b.element_size() for b in unique.values())


def training_step(model: nn.Module, inputs: Sequence[torch.Tensor]) -> Step:
    """One train-mode forward pass of ``model`` on fake CPU tensors shaped like its
    parameters, buffers and ``inputs`` (which may be meta tensors): what the CPU would
    save for the backward pass, and which parameters the loss (every floating-point
    output) reaches. The model's own tensors and modes are left as they were. Raises
    :class:`NotDerived` for what is not modelled; anything else a layer raises in train
    mode propagates."""
    from torch._subclasses.fake_tensor import FakeTensorMode  # private: see the docstring

    if any(isinstance(m, nn.LSTM) for m in model.modules()):
        _workspace_formula_holds()  # checked now: autograd is off inside a kernel
    fake = FakeTensorMode()
    with fake:
        tensors = _fake_state(model)
        args = tuple(_fake_cpu(t) for t in inputs)
    parameters = {_storage(t) for t in tensors.values() if isinstance(t, nn.Parameter)}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage(tensor)
        if key not in parameters:
            saved.setdefault(key, tensor.untyped_storage().nbytes())
        return tensor

    modes = (
        swapped(model, tensors),
        fake,
        _CpuStorages(),  # type: ignore[no-untyped-call]
        torch.autograd.graph.saved_tensors_hooks(pack, _unpack),
    )
    run = observe(model, args, modes=modes, train=True)
    if run.error is not None:
        raise run.error
    trained = tuple((tuple(p.shape), p.element_size()) for p in _reached(_outputs(run.output)))
    return Step(sum(saved.values()), trained)


def _fake_state(model: nn.Module) -> dict[int, torch.Tensor]:
    """Each parameter and buffer of ``model`` (by identity) → a fake CPU tensor of its
    shape, dtype and trainability: a tied tensor is one fake tensor."""
    made: dict[int, torch.Tensor] = {}
    for param in model.parameters():
        made[id(param)] = nn.Parameter(_fake_cpu(param), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        made[id(buffer)] = _fake_cpu(buffer)
    return made


@contextlib.contextmanager
def swapped(model: nn.Module, tensors: dict[int, torch.Tensor]) -> Iterator[None]:
    """Within the block, every module of ``model`` that holds one of the tensors whose
    ids ``tensors`` maps holds its replacement instead (by assignment, so a module that
    tracks its tensors, as the recurrent layers track their flat weights, sees the
    change); afterwards it holds its own again (:mod:`shapecli.weight_init` uses it too)."""
    done: list[tuple[nn.Module, str, torch.Tensor]] = []
    try:
        for module in model.modules():
            held = [*module._parameters.items(), *module._buffers.items()]
            for name, tensor in held:
                if tensor is not None and id(tensor) in tensors:
                    done.append((module, name, tensor))
                    setattr(module, name, tensors[id(tensor)])
        yield
    finally:
        for module, name, tensor in reversed(done):
            setattr(module, name, tensor)


def _fake_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor of the same shape, strides and dtype (fake, inside the fake mode)."""
    return torch.empty_strided(
        tuple(tensor.shape), tuple(tensor.stride()), dtype=tensor.dtype, device="cpu"
    )


def _storage(tensor: torch.Tensor) -> int:
    """A storage's identity (a view shares its tensor's)."""
    return int(tensor.untyped_storage()._cdata)


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _outputs(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a model's output (a tensor, or nested tuples, lists
    and dicts of them): what a loss is made of."""
    return (t for t in tensors_in(value) if t.is_floating_point())


def _reached(outputs: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters a backward pass from ``outputs`` gives a gradient: the leaves of
    their autograd graph (``AccumulateGrad`` nodes), each once, in the order found."""
    found: dict[int, torch.Tensor] = {}
    # Each node seen is kept, not just its id: some torch releases hand out a new Python
    # object for a node at every ``next_functions``, and a freed one's id is reused.
    seen: dict[int, object] = {}
    todo = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            found.setdefault(id(variable), variable)
        todo.extend(n for n, _ in node.next_functions if n is not None)
    return list(found.values())


# -- oneDNN's LSTM workspace ----------------------------------------------------------------

PAGE = 4096


def _good_ld(width: int) -> int:
    """oneDNN's leading dimension for float32 rows of ``width``: a multiple of 64 bytes,
    and not of 1 KiB (``rnn_utils::get_good_ld``, against 4K aliasing)."""
    ld = -(-width // 16) * 16
    return ld + 16 if ld % 256 == 0 else ld


def _page(offset: int) -> int:
    return -(-offset // PAGE) * PAGE


def onednn_lstm_workspace(steps: int, batch: int, features: int, hidden: int) -> int:
    """Bytes of the workspace oneDNN keeps for one float32 LSTM layer in one direction
    when training (torch calls it once per layer and direction): the gates and outputs
    of every step, the states and their gradients at every step boundary, each part
    starting on a 4 KiB page (``rnn_utils.hpp``: ``set_workspace_sizes``; ``rnn_utils.cpp``:
    ``set_offsets``)."""
    rows = 2 * (steps + 1) * batch  # (layers + 1) × (steps + 1) × batch, one layer
    wide = _good_ld(max(features, hidden))
    parts = (
        steps * batch * _good_ld(4 * hidden),  # the 4 gates of every step
        steps * batch * _good_ld(hidden),  # h of every step
        rows * wide,  # the states (layer and iteration share them)
        rows * hidden,  # the cell states
        rows * wide,  # gradients of the layer states
        rows * wide,  # gradients of the iteration states
        rows * hidden,  # gradients of the cell states
    )
    offset = 0
    for part in parts:
        offset = _page(offset) + 4 * part
    return _page(offset)


class _CpuStorages(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Inside the fake mode: gives the outputs of the kernels whose CPU storage differs
    from what their fake kernel makes the CPU's size and layout, so autograd saves what
    it saves on the CPU. Raises :class:`NotDerived` where the size is not modelled."""

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.mkldnn_rnn_layer.default:
            output, hy, cy, workspace = result
            size = _workspace_size(args)
            return output, hy, cy, torch.empty(size, dtype=torch.uint8, device=workspace.device)
        if func is torch.ops.aten._embedding_bag.default:
            output, offset2bag, *rest = result
            return (output, _one_more(offset2bag), *rest)
        if func in _batch_norms():
            output, *rest = result
            return (_laid_out(output, _batch_norm_layout(args[0])), *rest)
        return result


@functools.cache
def _batch_norms() -> frozenset[Any]:
    """The batch-norm kernels whose output the CPU lays out anew (the ones this torch has)."""
    aten = torch.ops.aten
    names = [
        ("native_batch_norm", "default"),
        ("_native_batch_norm_legit", "default"),
        ("_native_batch_norm_legit", "no_stats"),
        ("_native_batch_norm_legit_no_training", "default"),
        ("_batch_norm_with_update", "default"),
        ("_batch_norm_no_update", "default"),
    ]
    found = (getattr(getattr(aten, op, None), overload, None) for op, overload in names)
    return frozenset(f for f in found if f is not None)


def _batch_norm_layout(x: torch.Tensor) -> torch.memory_format:
    """The layout of batch norm's output on the CPU, whose kernel writes it contiguous in
    the format its input suggests (channels-last stays so; any other layout becomes
    contiguous), where the fake kernel keeps the input's strides: a transposed input
    gives a contiguous output, and a layer after it that needs one (a Linear) copies
    nothing on the CPU. Where the CPU's choice turns on dimensions of size 1 in an
    unusual layout it is not modelled."""
    from torch._prims_common import suggest_memory_format  # torch's mirror of the C++ one

    last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if x.is_contiguous():
        return torch.contiguous_format
    if last is not None and x.is_contiguous(memory_format=last):
        return last
    if last is not None and 1 in x.shape:
        raise NotDerived(
            "the layout of batch norm's output for this input's layout is not modelled"
        )
    return suggest_memory_format(x)


def _laid_out(tensor: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``tensor``'s shape and dtype, contiguous in ``layout`` (itself if it is)."""
    if tensor.is_contiguous(memory_format=layout):
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device, memory_format=layout)


def _one_more(offset2bag: torch.Tensor) -> torch.Tensor:
    """EmbeddingBag's bag of each index, as the CPU kernel makes it when it makes it at
    all: in a storage of one element more (it counts into n + 1 slots, then shrinks the
    tensor, not the storage)."""
    n = offset2bag.numel()
    if n == 0:
        return offset2bag
    return torch.empty(n + 1, dtype=offset2bag.dtype, device=offset2bag.device)[:n]


def _workspace_size(args: tuple[Any, ...]) -> int:
    """The workspace of one ``mkldnn_rnn_layer`` call (its arguments: the input, four
    weights, h and c, reverse, batch sizes, mode, hidden size, …). torch hands oneDNN
    the input time-major, steps × batch × features, whatever its ``batch_first``
    argument says."""
    layer_input, w_ih, hidden = args[0], args[1], args[10]
    if layer_input.dtype != torch.float32:
        raise NotDerived(
            f"oneDNN's LSTM workspace in {str(layer_input.dtype).removeprefix('torch.')} "
            "is not modelled (float32 is)"
        )
    if w_ih.shape[0] != 4 * hidden:
        raise NotDerived("oneDNN's workspace is modelled for LSTM layers only")
    steps, batch, features = (int(n) for n in layer_input.shape)
    size = onednn_lstm_workspace(steps, batch, features, hidden)
    if not _workspace_formula_holds():
        raise NotDerived("oneDNN on this CPU sizes its LSTM workspace unlike the model of it")
    return size


@functools.cache
def _workspace_formula_holds() -> bool:
    """Whether this machine's oneDNN sizes the workspace of small real LSTMs as
    :func:`onednn_lstm_workspace` does: oneDNN chooses its implementation by CPU, so
    the formula is checked on the CPU that runs it, once per process (milliseconds),
    before a training pass (inside one, a kernel runs with autograd off)."""
    probes = ((2, 1, 3, 5), (3, 2, 70, 64))  # 4 × 64 gates: the padded leading dimension
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        return all(_real_workspace(*probe) == onednn_lstm_workspace(*probe) for probe in probes)


def _real_workspace(steps: int, batch: int, features: int, hidden: int) -> int | None:
    """The workspace a real CPU LSTM saves for backward, or None when it saves none."""
    sizes: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype == torch.uint8:
            sizes.append(tensor.numel())
        return tensor

    layer = nn.LSTM(features, hidden)
    with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
        layer(torch.zeros(steps, batch, features))
    return sizes[0] if sizes else None
