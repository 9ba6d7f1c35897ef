"""Measured costs of a dry run, and how shapecli avoids them without changing a result.

All of them but the last act only inside :func:`lean_meta`, the block that building
the modules (weight initialization runs meta ops) and the dry run run in, and leave the
process as they found it: a program that calls
``shapecli.inspect`` and then compiles or differentiates a model of its own sees an
unchanged torch.

1. **torch._dynamo on the first meta op.** Many meta kernels are Python references
   wrapped by ``torch._disable_dynamo``, whose wrapper imports ``torch._dynamo``
   (~1.5 s, 70 MiB) on its first call, only to mark the function "not traceable"
   and cache that in ``fn.__dynamo_disable``. Inside the block that cache holds the
   function itself, so meta kernels run without the import; on leaving, the entries
   are removed again, so a later ``torch.compile`` finds the wrapper as torch left it.
   If a torch release changes the wrapper, nothing is patched and nothing breaks: the
   dry run is only slower. The wrapped functions are found through the one code
   object all their wrappers share, and looked for again only when its reference
   count says new ones were made: one search of ~15 ms per process, not one per block.

2. **Recurrent layers step through time on meta.** ``nn.LSTM``, ``nn.GRU`` and
   ``nn.RNN`` end in one fused kernel (``_VF.lstm`` …) that has no meta kernel: on the
   meta device it decomposes into one small op per time step, so a 2-layer
   bidirectional LSTM over 2,048 steps costs tens of seconds. Its output shape is a
   function of its input and hidden shapes alone, so inside the block the fused call
   gets empty meta tensors of those shapes. torch's own Python ``forward`` still runs
   first — every check of ranks, sizes, dtypes and hidden states — so a bad input
   fails exactly as before. Only meta tensors take the shortcut, and
   ``tests/test_speedups.py`` compares the rule with real CPU runs over batch-first,
   bidirectional, projected, stacked and unbatched layers. The matrix products the
   skipped steps would have done are counted (:func:`recurrent_flops`), so ``--flops``
   stays right: ``2 × rows × columns`` of every weight matrix, per step and sample.

3. **Weight initialization on meta tensors.** Every layer fills its weights when it
   is made (a lazy one, when its first input fixes their sizes): ``nn.init``'s
   ``kaiming_uniform_``, ``normal_`` … run their random-number kernels as Python meta
   kernels, for tensors that hold no values — 10-20% of a small dry run. Inside the
   block, ``torch.nn.init``'s common initializers make their checks of a meta tensor
   (its dimensions, the mode, the nonlinearity: by torch's own helpers) and return it
   unfilled, and act as before on any other, so ``shapecli build``'s real weights are
   the same bit for bit (its tests compare them, and its guard finds any weight left
   unset). A layer that imported an initializer by name before the block keeps
   torch's own: only slower.

4. **Interpreter teardown after torch** takes 0.3-0.9 s of freeing objects nobody
   will look at again. :func:`exit_now` flushes the streams and leaves: the CLI's
   last act, never the API's.

5. **Full garbage collections over torch's heap.** After ``import torch`` and sympy
   some 200,000 objects are alive, and each full collection walks them all; the
   modules and records of a big dry run trigger several (30% of inspecting a
   192-block decoder). In a process it owns (:func:`own_the_process`, which the CLI
   calls and the API never does: the heap is its caller's), the first block moves
   everything alive into the permanent generation (``gc.freeze()``), so collections
   walk only what the dry runs make; lint's forked workers inherit it, and do not
   copy pages that a collection would otherwise touch.

What remains of a small dry run is mostly sympy (~0.35 s): ``torch._check``, which the
meta kernels call, imports ``torch.fx.experimental.symbolic_shapes`` and with it sympy.

``benchmarks/startup.py`` measures these, as ratios to ``python -c "import torch"``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn


@dataclass
class _Lean:
    """The state of the open :func:`lean_meta` blocks, in any thread: how many are open,
    the process-wide changes they share (undone when the last one closes), the
    functions whose dynamo cache they filled, and the wrapped functions the last search
    of the heap found, with how many references the wrapper's code object had then
    (every wrapped function made since holds one more)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    depth: int = 0
    shared: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    patched: list[Callable[..., Any]] = field(default_factory=list)
    references_seen: int = -1
    wrapped: list[Callable[..., Any]] = field(default_factory=list)
    own_process: bool = False


_LEAN = _Lean()


@contextlib.contextmanager
def lean_meta(recurrent: bool = True) -> Iterator[None]:
    """The block a dry run runs in: no dynamo import, recurrent layers by shape rule
    (unless ``recurrent`` is False), no initialization of meta weights, and in a
    process of shapecli's own a frozen heap (see the module docstring). Blocks nest
    freely — a command that checks many files opens one around them all — and each one
    entered notices wrapped functions made since the last. Threads may open blocks at
    once: the changes to torch last while any block is open, in any thread."""
    with _LEAN.lock:
        _fill_dynamo_caches()
        if not _LEAN.depth:
            if _LEAN.own_process and not gc.get_freeze_count():
                gc.freeze()  # what is alive now lives until exit: collections skip it
            _LEAN.shared.enter_context(_meta_init_skipped())
            _LEAN.shared.enter_context(_every_warning())
        _LEAN.depth += 1
    try:
        with recurrent_shape_rules(recurrent):
            yield
    finally:
        with _LEAN.lock:
            _LEAN.depth -= 1
            if not _LEAN.depth:
                _LEAN.shared.close()
                _empty_dynamo_caches()


@contextlib.contextmanager
def _every_warning() -> Iterator[None]:
    """Within the block, torch gives every warning it would give only once per process
    (``TORCH_WARN_ONCE``): each spec checked gets its own, whether it is the first in
    the process or not, and lint's workers report what one process would."""
    import torch

    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        yield
    finally:
        torch.set_warn_always(before)


@contextlib.contextmanager
def _meta_init_skipped() -> Iterator[None]:
    """Within the block, ``torch.nn.init``'s in-place initializers leave meta tensors
    alone (there is nothing to fill); on leaving, torch's own functions are back."""
    from torch.nn import init

    namespace = vars(init)
    checks = _meta_checks(init)
    originals = {name: namespace[name] for name in checks if callable(namespace.get(name))}
    for name, fn in originals.items():
        namespace[name] = _skipping_meta(fn, checks[name])
    try:
        yield
    finally:
        namespace.update(originals)


Check = Callable[[Any, dict[str, Any]], object]


def _meta_checks(init: types.ModuleType) -> dict[str, Check]:
    """The initializers skipped on meta, each with the checks it makes of its tensor and
    arguments before filling — by torch's own helpers — so a bad call still fails as
    before (``xavier_uniform_`` of a bias: "fewer than 2 dimensions"). Initializers
    whose checks are not separable (``orthogonal_``, ``dirac_`` …) run as torch has
    them; so do all of them on a torch without these helpers."""
    fans = getattr(init, "_calculate_fan_in_and_fan_out", None)
    fan = getattr(init, "_calculate_correct_fan", None)
    gain = getattr(init, "calculate_gain", None)

    def nothing(tensor: Any, arguments: dict[str, Any]) -> None:
        return None

    checks: dict[str, Check] = dict.fromkeys(
        ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_"), nothing
    )
    if fans is not None:
        checks["xavier_uniform_"] = checks["xavier_normal_"] = lambda t, a: fans(t)
    if fan is not None and gain is not None:

        def kaiming(tensor: Any, arguments: dict[str, Any]) -> None:
            if 0 in tensor.shape:
                return  # torch says such a call does nothing, and returns
            fan(tensor, arguments["mode"])
            gain(arguments["nonlinearity"], arguments["a"])

        checks["kaiming_uniform_"] = checks["kaiming_normal_"] = kaiming
    return checks


def _skipping_meta(initializer: Callable[..., Any], check: Check) -> Callable[..., Any]:
    signature = inspect.signature(initializer)

    @functools.wraps(initializer)
    def initialize(*args: Any, **kwargs: Any) -> Any:
        tensor = args[0] if args else kwargs.get("tensor")
        if not getattr(tensor, "is_meta", False):
            return initializer(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)  # a call torch would refuse is refused
        bound.apply_defaults()
        check(tensor, bound.arguments)
        return tensor

    return initialize


def _fill_dynamo_caches() -> None:
    """Fill the dynamo-disable cache of every wrapped function not yet filled.

    The heap is searched only when wrapped functions may have been made since the last
    search: each holds a reference to the wrapper's one code object, so a change in
    that object's reference count is the sign (~1 µs, where a search costs ~25 ms). A
    function made while another went away would go unseen: it imports dynamo on its
    first call, which is slower, never wrong.
    """
    code = _wrapper_code()
    if _dynamo_loaded() or code is None:
        return  # already paid for; or a torch whose wrapper is not the one we know
    if sys.getrefcount(code) != _LEAN.references_seen:
        # added to what earlier searches found: a search does not see a frozen heap
        found = {id(fn): fn for fn in (*_LEAN.wrapped, *_dynamo_wrapped())}
        _LEAN.wrapped = list(found.values())
        _LEAN.references_seen = sys.getrefcount(code)  # the search's own references gone
    elif _LEAN.patched:
        return  # filled, and nothing new since
    for fn in _LEAN.wrapped:
        if getattr(fn, "__dynamo_disable", None) is None:
            try:
                fn.__dynamo_disable = fn  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                continue
            _LEAN.patched.append(fn)


def _dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def _empty_dynamo_caches() -> None:
    for fn in _LEAN.patched:
        if getattr(fn, "__dynamo_disable", None) is fn:
            with contextlib.suppress(AttributeError, TypeError):
                del fn.__dynamo_disable
    _LEAN.patched.clear()  # what the search found is kept: the next block refills it


@functools.cache
def _wrapper_code() -> types.CodeType | None:
    """The code object every ``torch._disable_dynamo`` wrapper shares, if it closes over
    the wrapped function as ``fn`` (None for a torch whose wrapper is otherwise)."""
    import torch

    wrapper = getattr(torch, "_disable_dynamo", None)
    if wrapper is None:
        return None
    code: types.CodeType = wrapper(lambda: None).__code__
    return code if "fn" in code.co_freevars else None


def _dynamo_wrapped() -> list[Callable[..., Any]]:
    """Every live function behind a ``torch._disable_dynamo`` wrapper: the functions
    that refer to the wrapper's code object (one pass over the heap, in C)."""
    code = _wrapper_code()
    if code is None:
        return []
    slot = code.co_freevars.index("fn")
    found = []
    for obj in gc.get_referrers(code):
        if type(obj) is types.FunctionType and obj.__code__ is code and obj.__closure__:
            fn = obj.__closure__[slot].cell_contents
            if callable(fn):
                found.append(fn)
    return found


def own_the_process() -> None:
    """Say that this process is shapecli's own (the CLI), so a speed-up that acts on the
    whole process and cannot be undone is allowed (see the module docstring)."""
    _LEAN.own_process = True


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr, then end the process without interpreter teardown.

    A closed pipe (``| head``) is not an error: whatever could not be written is
    dropped quietly and the exit code stays the command's own.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def recurrent_shape_rules(enabled: bool = True) -> Iterator[None]:
    """Within the block, recurrent layers on meta tensors cost the same at any length
    (or, ``enabled=False``, step through time as torch does, even inside a block that
    enabled the rule)."""
    from torch.nn.modules import rnn

    namespace = vars(rnn)
    current = namespace["_VF"]
    real = current._real if isinstance(current, _RecurrentShapes) else current
    namespace["_VF"] = _RecurrentShapes(real) if enabled else real
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
    if tensor.device.type == "meta":
        return True
    fake = sys.modules.get("torch._subclasses.fake_tensor")
    return fake is not None and bool(fake.is_fake(tensor))


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
