"""Symbolic sizes: torch's ``ShapeEnv`` (``torch.fx.experimental.symbolic_shapes``) and the
``Source`` (``torch._guards``) that names each symbol.

:mod:`shapecli.symbolic` makes a symbol per named size and reads back the guards and
replacements torch recorded about them: private API that changed between releases (a
``Source`` says its name through a method on older torch, a property on newer). Off
(see :data:`TOUCHPOINT`), symbolic sizes are refused (:func:`require`): concrete sizes
still work, and nothing half-derived is printed.

:func:`uninteresting_files_known` and :func:`idle_trace_handler_removed` spare the
first symbol made in a process imports of torch's compiler (see there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator

from shapecli.errors import Problem, ShapecliError
from shapecli.torch_compat import Releases, Touchpoint, installed_torch


def require() -> None:
    """Raise ``unsupported-torch`` (exit 2) unless symbolic sizes work on this torch."""
    if not TOUCHPOINT.active():
        raise ShapecliError(
            Problem(
                "unsupported-torch",
                f"symbolic sizes need torch {TOUCHPOINT.tested}, and torch "
                f"{installed_torch()} is installed",
                hint="give numbers for every size, or install a torch it supports: "
                f"pip install '{TOUCHPOINT.tested.requirement()}'",
            )
        )


def _self_check() -> bool:
    """A symbol named by a ``Source`` whose name is a property, as shapecli names them,
    gets that name."""
    import torch
    from torch._guards import GuardSource, Source
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    @dataclasses.dataclass(frozen=True)
    class Named(Source):
        label: str = ""

        @property
        def name(self) -> str:  # type: ignore[override, unused-ignore]
            return self.label

        @property
        def guard_source(self) -> GuardSource:  # type: ignore[override, unused-ignore]
            return GuardSource.LOCAL

    idle_trace_handler_removed()
    with uninteresting_files_known():
        env = ShapeEnv()
        symbol = env.create_symbol(3, Named(label="Probe"), dynamic_dim=DimDynamic.DYNAMIC)
        size = env.create_symintnode(symbol, hint=3)
        return isinstance(size, torch.SymInt) and size.node.expr == symbol and int(size + 1) == 4


@contextlib.contextmanager
def uninteresting_files_known() -> Iterator[None]:
    """Within the block, torch's list of "uninteresting" files — those the ``ShapeEnv``
    skips to name the user frame where a symbol was made or a guard added — is the
    files of the torch modules already imported. torch's own list, made on first use,
    imports ``torch.export._trace`` and ``torch._inductor`` (~0.3 s after dynamo) only
    to read their file names; the frame it finds labels torch's debug messages alone.
    Left as it is where torch's own list was made already, or the function is not the
    cached one this knows."""
    from torch.fx.experimental import symbolic_shapes

    original = getattr(symbolic_shapes, "uninteresting_files", None)
    if not callable(original) or getattr(original, "cache_info", None) is None:
        yield  # not the function this knows: leave it
        return
    if original.cache_info().currsize:
        yield  # already paid for: torch's own list is there
        return
    known = frozenset(
        getattr(module, "__file__", None) or ""
        for name, module in list(sys.modules.items())
        if name.startswith("torch.")
    )
    symbolic_shapes.uninteresting_files = lambda: known  # type: ignore[assignment]
    try:
        yield
    finally:
        symbolic_shapes.uninteresting_files = original


def idle_trace_handler_removed() -> None:
    """torch's structured-trace handler removed, where its first record would remove it.

    Every symbol the ``ShapeEnv`` makes is a structured-trace record too, whose details
    (a symbolized stack, whose first use imports ``torch._inductor``: ~0.15 s) are
    computed whenever the trace logger has a handler. torch's handler writes only to a
    trace folder (``TORCH_TRACE``) or on Meta's own cluster; anywhere else it removes
    itself at its first record, having written nothing (torch 2.13's
    ``LazyTraceHandler.emit``). Where that is so, it is removed now, before the first
    record's details are computed; any other handler is left as it is."""
    import os

    import torch.version
    from torch._logging import _internal

    if not hasattr(torch.version, "git_version") or os.getenv("MAST_HPC_JOB_NAME") is not None:
        return  # a build where the handler may find a folder of its own
    for handler in list(_internal.trace_log.handlers):
        idle = getattr(handler, "root_dir", 0) is None and getattr(handler, "stream", 0) is None
        if type(handler).__name__ == "LazyTraceHandler" and idle:
            _internal.trace_log.removeHandler(handler)


TOUCHPOINT = Touchpoint(
    reaches="ShapeEnv.create_symbol, create_symintnode, replacements and guards; "
    "torch._guards.Source",
    tested=Releases((2, 13), (2, 14)),
    self_check=_self_check,
)
