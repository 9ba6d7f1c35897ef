"""Symbolic sizes: torch's ``ShapeEnv`` (``torch.fx.experimental.symbolic_shapes``) and the
``Source`` (``torch._guards``) that names each symbol.

:mod:`shapecli.symbolic` makes a symbol per named size and reads back the guards and
replacements torch recorded about them: private API that changed between releases (a
``Source`` says its name through a method on older torch, a property on newer). Off
(see :data:`TOUCHPOINT`), symbolic sizes are refused (:func:`require`): concrete sizes
still work, and nothing half-derived is printed.
"""

from __future__ import annotations

import dataclasses

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

    env = ShapeEnv()
    symbol = env.create_symbol(3, Named(label="Probe"), dynamic_dim=DimDynamic.DYNAMIC)
    size = env.create_symintnode(symbol, hint=3)
    return isinstance(size, torch.SymInt) and size.node.expr == symbol and int(size + 1) == 4


TOUCHPOINT = Touchpoint(
    reaches="ShapeEnv.create_symbol, create_symintnode, replacements and guards; "
    "torch._guards.Source",
    tested=Releases((2, 13), (2, 14)),
    self_check=_self_check,
)
