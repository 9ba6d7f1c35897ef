"""Meta kernels without importing ``torch._dynamo``: the cache of ``torch._disable_dynamo``.

Many meta kernels are Python references wrapped by ``torch._disable_dynamo``, whose
wrapper imports ``torch._dynamo`` (~1.5 s, 70 MiB) on its first call, only to mark the
function "not traceable" and cache that in ``fn.__dynamo_disable``. :func:`fill` makes
that cache hold the function itself, so meta kernels run without the import;
:func:`empty` removes those entries again, so a later ``torch.compile`` finds the
wrappers as torch left them.

The wrapped functions are found through the one code object all their wrappers share
(closing over the wrapped function as ``fn``), and looked for again only when its
reference count says new ones were made: one search of ~15 ms per process, not one per
block. Off (see :data:`TOUCHPOINT`), nothing is filled: the first meta kernel imports
dynamo, which is slower, never wrong.

The callers hold a lock around :func:`fill` and :func:`empty`
(:func:`shapecli.speedups.lean_meta`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shapecli.torch_compat import Releases, Touchpoint, dynamo_deferred


@dataclass
class _Filled:
    """The functions whose cache :func:`fill` set, and the wrapped functions the last
    search of the heap found, with how many references the wrapper's code object had
    then (every wrapped function made since holds one more)."""

    patched: list[Callable[..., Any]] = field(default_factory=list)
    references_seen: int = -1
    wrapped: list[Callable[..., Any]] = field(default_factory=list)


STATE = _Filled()


def fill() -> None:
    """Fill the dynamo-disable cache of every wrapped function not yet filled.

    The heap is searched only when wrapped functions may have been made since the last
    search (a change in the wrapper code's reference count: ~1 µs, where a search costs
    ~25 ms). A function made while another went away would go unseen: it imports dynamo
    on its first call, which is slower, never wrong.
    """
    if dynamo_loaded() or not TOUCHPOINT.active():
        return  # already paid for; or a torch whose wrapper is not the one we know
    code = wrapper_code()
    if code is None:
        return
    if sys.getrefcount(code) != STATE.references_seen:
        # added to what earlier searches found: a search does not see a frozen heap
        found = {id(fn): fn for fn in (*STATE.wrapped, *wrapped_functions())}
        STATE.wrapped = list(found.values())
        STATE.references_seen = sys.getrefcount(code)  # the search's own references gone
    elif STATE.patched:
        return  # filled, and nothing new since
    for fn in STATE.wrapped:
        if getattr(fn, "__dynamo_disable", None) is None:
            try:
                fn.__dynamo_disable = fn  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                continue
            STATE.patched.append(fn)


def empty() -> None:
    """Remove what :func:`fill` set; what the searches found is kept for the next fill."""
    for fn in STATE.patched:
        if getattr(fn, "__dynamo_disable", None) is fn:
            with contextlib.suppress(AttributeError, TypeError):
                del fn.__dynamo_disable
    STATE.patched.clear()


def dynamo_loaded() -> bool:
    """Whether ``torch._dynamo`` was imported with its body (a package whose body
    :mod:`~shapecli.torch_compat.dynamo_deferred` deferred is not loaded yet)."""
    return dynamo_deferred.body_loaded()


@functools.cache
def wrapper_code() -> types.CodeType | None:
    """The code object every ``torch._disable_dynamo`` wrapper shares, if it closes over
    the wrapped function as ``fn`` (None for a torch whose wrapper is otherwise)."""
    import torch

    wrapper = getattr(torch, "_disable_dynamo", None)
    if wrapper is None:
        return None
    code: types.CodeType = wrapper(lambda: None).__code__
    return code if "fn" in code.co_freevars else None


def wrapped_functions() -> list[Callable[..., Any]]:
    """Every live function behind a ``torch._disable_dynamo`` wrapper: the functions
    that refer to the wrapper's code object (one pass over the heap, in C)."""
    code = wrapper_code()
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


def _self_check() -> bool:
    """A function wrapped now is found behind its wrapper, and with its cache filled
    the wrapper calls it without importing dynamo."""
    import torch

    code = wrapper_code()
    if code is None:
        return False

    def probe() -> str:
        return "called"

    wrapper = torch._disable_dynamo(probe)  # type: ignore[attr-defined]
    closure = wrapper.__closure__ or ()
    slot = code.co_freevars.index("fn")
    if wrapper.__code__ is not code or closure[slot].cell_contents is not probe:
        return False
    before = dynamo_loaded()
    probe.__dynamo_disable = probe
    try:
        answer = wrapper()
    finally:
        del probe.__dynamo_disable
    return answer == "called" and dynamo_loaded() == before


TOUCHPOINT = Touchpoint(
    reaches="the closure of torch._disable_dynamo's wrapper (`fn`) and the "
    "`fn.__dynamo_disable` attribute it caches",
    tested=Releases((2, 6), (2, 14)),
    self_check=_self_check,
)
