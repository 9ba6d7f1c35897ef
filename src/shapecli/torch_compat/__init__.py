"""The torch releases shapecli supports, and every place it reaches into torch's internals.

**The supported range.** shapecli runs on the torch releases in :data:`SUPPORTED`;
``pyproject.toml`` states the same range, and CI runs the tests on both of its ends as
well as on the pinned release. On any other torch, :func:`require_supported` stops a
dry run before it starts (``unsupported-torch``, exit 2, naming both versions): a torch
shapecli does not know could fail in ways that would read as the model's fault.

**Touchpoints.** Beyond torch's public API, a few speed-ups and diagnostics read or
change what torch keeps private. Each lives in a module of its own in this package and
declares a :class:`Touchpoint` — what it reaches into, the torch releases it was tested
on, and a self-check that tries it on a tiny case — the way torch.fx labels its own API
with ``@compatibility``. A touchpoint is on only on a torch in its tested range whose
self-check passes (checked once, on first use); otherwise its caller takes the plain
path, which is slower or says less, never something wrong.

Adding one is a module with its ``TOUCHPOINT`` and a line in :data:`MODULES`. Nothing
here imports torch until a touchpoint is used: ``shapecli --help`` stays fast.
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from shapecli.errors import Problem, ShapecliError

#: The modules of this package that each hold one touchpoint.
MODULES = (
    "dynamo_cache",
    "dynamo_deferred",
    "recurrent",
    "fake_tensors",
    "frames",
    "shape_env",
    "global_hooks",
)


@dataclass(frozen=True)
class Releases:
    """A range of torch minor releases, both ends included (``2.6`` to ``2.14``): a
    patch release behaves as its minor release does."""

    first: tuple[int, int]
    last: tuple[int, int]

    def __contains__(self, version: object) -> bool:
        release = minor_release(version) if isinstance(version, str) else None
        return release is not None and self.first <= release <= self.last

    def __str__(self) -> str:
        return f"{self.first[0]}.{self.first[1]} to {self.last[0]}.{self.last[1]}"

    def requirement(self) -> str:
        """The range as ``pyproject.toml`` writes it: ``torch>=2.6,<2.15``."""
        major, minor = self.last
        return f"torch>={self.first[0]}.{self.first[1]},<{major}.{minor + 1}"


#: The torch releases shapecli supports: CI tests the first and the last.
SUPPORTED = Releases((2, 6), (2, 14))


def minor_release(version: str) -> tuple[int, int] | None:
    """``(2, 13)`` for ``"2.13.0+cpu"`` (or a pre-release of 2.13); None if unreadable."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def installed_torch() -> str:
    """The version of the torch this process imports (importing it if need be)."""
    import torch

    return str(torch.__version__)


def unsupported_torch() -> Problem | None:
    """The problem with the installed torch, or None when shapecli supports it."""
    version = installed_torch()
    if version in SUPPORTED:
        return None
    return Problem(
        "unsupported-torch",
        f"shapecli supports torch {SUPPORTED}, and torch {version} is installed",
        hint=f"install a supported torch: pip install '{SUPPORTED.requirement()}'",
    )


def require_supported() -> None:
    """Raise ``unsupported-torch`` (exit 2) unless the installed torch is supported.

    Called where a dry run first needs torch, after the spec was read (a YAML error is
    reported as such, without importing torch). Reading a version string costs nothing
    next to importing torch, so it is read every time: nothing is cached to go stale.
    """
    problem = unsupported_torch()
    if problem is not None:
        raise ShapecliError(problem)


class Touchpoint:
    """One place shapecli reaches into torch's internals (see the module docstring)."""

    def __init__(self, reaches: str, tested: Releases, self_check: Callable[[], bool]) -> None:
        self.reaches = reaches
        self.tested = tested
        self.self_check = self_check
        self._active: bool | None = None

    def active(self) -> bool:
        """Whether to use it: on a torch in its tested range whose self-check passed.

        The self-check runs once, on first use, with warnings silenced (a probe's
        warning is not the user's) — an exception in it counts as a failure.
        """
        if self._active is None:
            self._active = installed_torch() in self.tested and _passes(self.self_check)
        return self._active


def _passes(check: Callable[[], bool]) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(check())
        except Exception:
            return False


def touchpoints() -> dict[str, Touchpoint]:
    """Every touchpoint, by the name of its module (this imports torch)."""
    return {name: importlib.import_module(f"{__name__}.{name}").TOUCHPOINT for name in MODULES}
