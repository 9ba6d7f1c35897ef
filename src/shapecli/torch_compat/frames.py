"""Which module calls an exception passed through: the frames of ``nn.Module.__call__``.

A layer that raises does so inside the frames torch's ``Module.__call__`` runs
(``_wrapped_call_impl``, then ``_call_impl``, whose ``self`` is the module called): its
own hooks — where a lazy layer sizes itself — as well as its ``forward``. Walking an
exception's traceback through those frames says which calls were still open when it was
raised, and none that torch caught on the way.

Off (see :data:`TOUCHPOINT`), no frame is recognised: a failure is then reported
without naming the layer that raised it, never with another layer's name.
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING

from shapecli.torch_compat import Releases, Touchpoint

if TYPE_CHECKING:
    from torch import nn

#: The methods of ``nn.Module`` that run a call, as their frames name them.
CALL_METHODS = ("_wrapped_call_impl", "_call_impl")


def module_called(frame: types.FrameType) -> nn.Module | None:
    """The module whose call ``frame`` runs, if it is a frame of ``Module.__call__``."""
    from torch import nn

    if frame.f_code not in _call_codes() or not TOUCHPOINT.active():
        return None
    module = frame.f_locals.get("self")
    return module if isinstance(module, nn.Module) else None


@functools.cache
def _call_codes() -> frozenset[types.CodeType]:
    from torch import nn

    methods = (getattr(nn.Module, name, None) for name in CALL_METHODS)
    return frozenset(m.__code__ for m in methods if isinstance(m, types.FunctionType))


def _self_check() -> bool:
    """An error raised two modules deep passes through both modules' calls, outermost
    first, and through nothing else."""
    from torch import nn

    class Fails(nn.Module):
        def forward(self) -> None:
            raise ValueError("probe")

    class Calls(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self) -> None:
            self.inner()

    inner = Fails()
    outer = Calls(inner)
    try:
        outer()
    except ValueError as e:
        found: list[object] = []
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in _call_codes():
                module = tb.tb_frame.f_locals.get("self")
                if not found or found[-1] is not module:
                    found.append(module)
            tb = tb.tb_next
        return found == [outer, inner]
    return False


TOUCHPOINT = Touchpoint(
    reaches="the frames of nn.Module.__call__: "
    + ", ".join(f"nn.Module.{name}" for name in CALL_METHODS)
    + ", and their `self`",
    tested=Releases((2, 6), (2, 14)),
    self_check=_self_check,
)
