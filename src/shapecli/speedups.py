"""Measured costs of a dry run, and how shapecli avoids them without changing a result.

The first two act only inside :func:`lean_meta`, the block that building the modules
(weight initialization runs meta ops) and the dry run run in, and leave the process as
they found it: a program that calls ``shapecli.inspect`` and then compiles or
differentiates a model of its own sees an unchanged torch. The others act only in a
process of shapecli's own (the CLI), for good.

1. **torch._dynamo on the first meta op.** Many meta kernels are Python references
   wrapped by ``torch._disable_dynamo``, whose wrapper imports ``torch._dynamo``
   (~1.5 s, 70 MiB) on its first call. Inside the block their cache says "not
   traceable" already, so meta kernels run without the import; on leaving, torch's
   wrappers are as they were (:mod:`shapecli.torch_compat.dynamo_cache`).

2. **Recurrent layers step through time on meta.** The fused kernel of ``nn.LSTM``,
   ``nn.GRU`` and ``nn.RNN`` has no meta kernel, and decomposes into one small op per
   time step; inside the block it gets a shape rule instead, and the FLOPs it skipped
   are counted (:mod:`shapecli.torch_compat.recurrent`).

3. **Interpreter teardown after torch** takes 0.3-0.9 s of freeing objects nobody
   will look at again. :func:`exit_now` flushes the streams and leaves: the CLI's
   last act, never the API's.

4. **Full garbage collections over torch's heap.** After ``import torch`` and sympy
   some 200,000 objects are alive, and each full collection walks them all; the
   modules and records of a big dry run trigger several (30% of inspecting a
   192-block decoder). In a process it owns (:func:`own_the_process`, which the CLI
   calls and the API never does: the heap is its caller's), the first block moves
   everything alive into the permanent generation (``gc.freeze()``), so collections
   walk only what the dry runs make; lint's forked workers inherit it, and do not
   copy pages that a collection would otherwise touch.

5. **torch._dynamo's package body under fake tensors.** Symbolic sizes need torch's
   fake tensors and ``ShapeEnv``, which read a few of dynamo's submodules; importing
   one runs the package's body, which imports the whole compiler (~1 s). In a process
   of shapecli's own, :func:`dynamo_deferred` runs the body only when something reads
   more than a submodule (:mod:`shapecli.torch_compat.dynamo_deferred`).

The first two and the last reach into torch's internals, and switch themselves off on a torch they
were not tested on, or whose self-check fails (:mod:`shapecli.torch_compat`): a dry run
is then slower, never different. Weight initialization on meta tensors (``nn.init``'s
random-number kernels, for tensors that hold no values) is left as torch does it:
skipping it would mean replacing functions in ``torch.nn.init``, a namespace the
caller's program shares, for a few percent of a dry run (``benchmarks/meta_init.py``).

What remains of a small dry run is mostly sympy (~0.35 s): ``torch._check``, which the
meta kernels call, imports ``torch.fx.experimental.symbolic_shapes`` and with it sympy.

``benchmarks/startup.py`` measures these, as ratios to ``python -c "import torch"``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from shapecli.torch_compat import dynamo_cache, fake_tensors
from shapecli.torch_compat import dynamo_deferred as dynamo_deferred_module
from shapecli.torch_compat import recurrent as recurrent_rule
from shapecli.torch_compat.recurrent import recurrent_flops, recurrent_shape_rules

__all__ = [
    "dynamo_deferred",
    "exit_now",
    "lean_meta",
    "own_the_process",
    "recurrent_flops",
    "recurrent_shape_rules",
]


@dataclass
class _Lean:
    """The state of the open :func:`lean_meta` blocks, in any thread: how many are open,
    and the process-wide changes they share (undone when the last one closes)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    depth: int = 0
    shared: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    own_process: bool = False
    #: The heap was frozen (or found frozen): asked once, since ``gc.get_freeze_count``
    #: walks the whole permanent generation (~20 ms after torch, sympy and dynamo), and
    #: a symbolic inspection opens a block per checking run.
    frozen: bool = False


_LEAN = _Lean()


def run_self_checks() -> None:
    """Run the self-checks of the touchpoints the speed-ups use (each once per process;
    later calls are free). A pass calls this before its hooks go in: a probe's modules
    (an LSTM) must not be recorded as the model's."""
    recurrent_rule.TOUCHPOINT.active()
    fake_tensors.TOUCHPOINT.active()


@contextlib.contextmanager
def lean_meta(recurrent: bool = True) -> Iterator[None]:
    """The block a dry run runs in: no dynamo import, recurrent layers by shape rule
    (unless ``recurrent`` is False), every torch warning given, and in a process of
    shapecli's own a frozen heap (see the module docstring). Blocks nest
    freely — a command that checks many files opens one around them all — and each one
    entered notices wrapped functions made since the last. Threads may open blocks at
    once: the changes to torch last while any block is open, in any thread."""
    with _LEAN.lock:
        dynamo_cache.fill()
        if not _LEAN.depth:
            # The rule's self-checks run now, before a pass enters its modes (a fake mode
            # would fool the probe of fake tensors), and while no block in any thread has
            # torch's _VF swapped (the probe swaps it too).
            run_self_checks()
            if _LEAN.own_process and not _LEAN.frozen:
                if not gc.get_freeze_count():
                    gc.freeze()  # what is alive now lives until exit: collections skip it
                _LEAN.frozen = True
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
                dynamo_cache.empty()


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


def own_the_process() -> None:
    """Say that this process is shapecli's own (the CLI), so a speed-up that acts on the
    whole process and cannot be undone is allowed (see the module docstring)."""
    _LEAN.own_process = True


def dynamo_deferred() -> contextlib.AbstractContextManager[None]:
    """The block a symbolic inspection runs in: in a process of shapecli's own, the
    body of ``torch._dynamo`` runs only when something needs more than its submodules
    (see the module docstring)."""
    return dynamo_deferred_module.deferring(_LEAN.own_process)


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr, then end the process without interpreter teardown.

    A closed pipe (``| head``) is not an error: whatever could not be written is
    dropped quietly and the exit code stays the command's own.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stream.flush()
    os._exit(code)
