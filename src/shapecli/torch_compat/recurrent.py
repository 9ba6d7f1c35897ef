"""Recurrent layers on meta tensors at the cost of one step: a shape rule for the fused
kernels that ``torch.nn.modules.rnn`` calls through its private ``_VF``.

``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` end in one fused kernel (``_VF.lstm`` …) that has
no meta kernel: on the meta device it decomposes into one small op per time step, so a
2-layer bidirectional LSTM over 2,048 steps costs tens of seconds. Its output shape is a
function of its input and hidden shapes alone, so inside :func:`recurrent_shape_rules`
the fused call gets empty meta tensors of those shapes. torch's own Python ``forward``
still runs first — every check of ranks, sizes, dtypes and hidden states — so a bad
input fails exactly as before. Only tensors without values take the shortcut, and
``tests/test_speedups.py`` compares the rule with real CPU runs over batch-first,
bidirectional, projected, stacked and unbatched layers. The matrix products the skipped
steps would have done are counted (:func:`recurrent_flops`), so ``--flops`` stays
right: ``2 × rows × columns`` of every weight matrix, per step and sample.

Off (see :data:`TOUCHPOINT`), the layers step through time as torch has them: slower,
and the same shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from shapecli.torch_compat import Releases, Touchpoint, fake_tensors


@contextlib.contextmanager
def recurrent_shape_rules(enabled: bool = True) -> Iterator[None]:
    """Within the block, recurrent layers on meta tensors cost the same at any length
    (or, ``enabled=False``, step through time as torch does, even inside a block that
    enabled the rule)."""
    from torch.nn.modules import rnn

    namespace = vars(rnn)
    current = namespace["_VF"]
    real = current._real if isinstance(current, _RecurrentShapes) else current
    namespace["_VF"] = _RecurrentShapes(real) if enabled and TOUCHPOINT.active() else real
    try:
        yield
    finally:
        namespace["_VF"] = current


class _RecurrentShapes:
    """Stands in for ``torch._VF`` in ``torch.nn.modules.rnn``: the fused recurrent
    kernels get a shape rule on meta tensors; everything else is the real ``_VF``."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def lstm(self, *args: Any) -> Any:
        return _shape_rule(self._real.lstm, args)

    def gru(self, *args: Any) -> Any:
        return _shape_rule(self._real.gru, args)

    def rnn_tanh(self, *args: Any) -> Any:
        return _shape_rule(self._real.rnn_tanh, args)

    def rnn_relu(self, *args: Any) -> Any:
        return _shape_rule(self._real.rnn_relu, args)


_RECURRENT_FLOPS = [0]


def recurrent_flops() -> int:
    """The FLOPs of the recurrent kernels answered by the shape rule so far."""
    return _RECURRENT_FLOPS[0]


def _shape_only(tensor: Any) -> bool:
    """A tensor without values: on the meta device, or fake (a symbolic-size pass, where
    torch's own recurrent kernel cannot run at all: it asks for a concrete numel)."""
    return tensor.device.type == "meta" or fake_tensors.is_fake(tensor)


def _shape_rule(kernel: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``(output, *hidden)`` for ``kernel(input, hx, weights, bias, layers, dropout,
    train, bidirectional, batch_first)``: the output keeps the input's leading dims and
    has ``directions × hidden`` features (the hidden size after any projection is the
    last dim of ``h_0``, which torch's ``forward`` has already checked); each final
    hidden state has its initial state's shape. Anything else (packed sequences, real
    tensors) goes to the real kernel."""
    import torch

    if len(args) != 9 or not isinstance(args[2], list | tuple):  # packed: (input, sizes, hx…)
        return kernel(*args)
    x, hx = args[0], args[1]
    hidden = tuple(hx) if isinstance(hx, list | tuple) else (hx,)
    if not all(isinstance(t, torch.Tensor) and _shape_only(t) for t in (x, *hidden)):
        return kernel(*args)
    directions = 2 if args[7] else 1
    output = x.new_empty((*x.shape[:-1], directions * hidden[0].shape[-1]))
    if all(isinstance(d, int) for d in x.shape):  # symbolic sizes count no FLOPs
        steps = x.numel() // x.shape[-1]  # time steps × batch
        matrices = (w for w in args[2] if w.dim() == 2)
        _RECURRENT_FLOPS[0] += sum(2 * w.shape[0] * w.shape[1] * steps for w in matrices)
    return (output, *(torch.empty_like(h) for h in hidden))


def _self_check() -> bool:
    """On tiny meta layers of each kind (stacked, bidirectional, batch-first, unbatched),
    the rule answers the fused call with the shapes torch documents for it — which a
    change in the kernel's arguments would not give. (The tests compare the rule with
    real runs; a real run here would cost more than the rule saves a small spec.)"""
    import torch
    from torch import nn
    from torch.nn.modules import rnn

    if not all(hasattr(vars(rnn).get("_VF"), k) for k in ("lstm", "gru", "rnn_tanh", "rnn_relu")):
        return False
    meta = {"device": "meta", "dtype": torch.float32}
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, **meta)
    probes = [
        (lstm, (2, 5, 3), ((2, 5, 8), ((4, 2, 4), (4, 2, 4)))),
        (nn.GRU(3, 4, **meta), (5, 3), ((5, 4), (1, 4))),
        (nn.RNN(3, 4, nonlinearity="relu", **meta), (5, 2, 3), ((5, 2, 4), (1, 2, 4))),
    ]
    return all(_answers(layer, size, shapes) for layer, size, shapes in probes)


def _answers(layer: Any, size: tuple[int, ...], expected: tuple[Any, ...]) -> bool:
    """The rule answers ``layer`` on a meta input of ``size``, with ``expected`` shapes."""
    import torch
    from torch.nn.modules import rnn

    namespace = vars(rnn)
    current, before = namespace["_VF"], _RECURRENT_FLOPS[0]
    namespace["_VF"] = _RecurrentShapes(current)
    try:
        got = _shapes(layer(torch.empty(size, device="meta", dtype=torch.float32)))
        answered = _RECURRENT_FLOPS[0] > before  # the rule ran, not torch's steps
    finally:
        namespace["_VF"], _RECURRENT_FLOPS[0] = current, before
    return answered and got == expected


def _shapes(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return tuple(_shapes(v) for v in value)
    return tuple(value.shape)


TOUCHPOINT = Touchpoint(
    reaches="torch.nn.modules.rnn's `_VF` and the arguments of its fused kernels "
    "(lstm, gru, rnn_tanh, rnn_relu)",
    tested=Releases((2, 6), (2, 14)),
    self_check=_self_check,
)
