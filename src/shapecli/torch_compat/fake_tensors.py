"""Telling a fake tensor (a symbolic-size pass's) from a real one: torch's private
``torch._subclasses.fake_tensor``.

The module is read only once something has imported it: before that no fake tensor can
exist, and importing it would cost time for nothing. Off (see :data:`TOUCHPOINT`),
:func:`is_fake` says no: a fake tensor then takes torch's own path, which may refuse it
(an error, never a wrong shape).
"""

from __future__ import annotations

import sys
from typing import Any

from shapecli.torch_compat import Releases, Touchpoint

_MODULE = "torch._subclasses.fake_tensor"


def is_fake(tensor: Any) -> bool:
    """Whether ``tensor`` is a fake tensor."""
    if _MODULE not in sys.modules or not TOUCHPOINT.active():
        return False
    return bool(sys.modules[_MODULE].is_fake(tensor))


def _self_check() -> bool:
    """torch's test and class are there, and a real tensor is not fake. (Making a fake
    one would need a fake mode, which imports ``torch._dynamo``: what the speed-ups
    avoid. The symbolic-size tests make them.)"""
    import torch

    fake = sys.modules.get(_MODULE)
    if fake is None:
        return True  # none can exist: :func:`is_fake` asks nothing of it
    cls = getattr(fake, "FakeTensor", None)
    test = getattr(fake, "is_fake", None)
    if not (isinstance(cls, type) and issubclass(cls, torch.Tensor) and callable(test)):
        return False
    return not test(torch.empty(0))


TOUCHPOINT = Touchpoint(
    reaches="torch._subclasses.fake_tensor: is_fake and FakeTensor",
    tested=Releases((2, 6), (2, 14)),
    self_check=_self_check,
)
