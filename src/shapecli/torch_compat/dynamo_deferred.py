"""Fake tensors and the ``ShapeEnv`` without the body of the ``torch._dynamo`` package.

torch's ``FakeTensorMode`` reads ``torch._dynamo.config``, and the ``ShapeEnv`` imports
``torch.fx.experimental.validator``, which imports ``torch._dynamo.exc`` and
``torch._dynamo.utils``. Importing any submodule runs the package's ``__init__`` first,
which imports the whole compiler (``torch._inductor`` with it): ~1 s of CPU in every
symbolic inspection, for a few configuration flags and helpers.

:func:`deferring` is the block the symbolic run (and the ``ShapeEnv``'s self-check)
runs in. If nothing imported the package yet, it becomes a module of its own class
whose body has not run: its submodules import as usual, and the body runs, in the
same module object, the first time anything reads an attribute that is not a
submodule (``torch._dynamo.disable``) — then torch's code gets the whole package as it
would have. After the block, *any* missing attribute runs the body first (a submodule
name too: the body may bind another object to it), so code outside the block sees the
package it would have seen, only imported later.

Only in a process of shapecli's own (the CLI: see :mod:`shapecli.speedups`), since the
package stays that way for the life of the process; the API leaves torch's imports to
its caller. Off (see :data:`TOUCHPOINT`), the block does nothing: slower, never
different.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shapecli.torch_compat import Releases, Touchpoint

_PACKAGE = "torch._dynamo"
_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """``torch._dynamo`` before its body ran (see the module docstring)."""

    _submodules_only = False  # set on the instance while a block is open

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._submodules_only and _is_submodule(self, name):
            return importlib.import_module(f"{self.__name__}.{name}")
        return getattr(load(self), name)


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    folder = Path(package.__path__[0])
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def load(module: types.ModuleType) -> types.ModuleType:
    """Run the deferred package's body in ``module`` (nothing if it ran already)."""
    with _LOCK:
        if isinstance(module, _Deferred):
            module.__class__ = types.ModuleType  # type: ignore[assignment]  # a plain one now
            vars(module).pop("_submodules_only", None)
            assert module.__spec__ is not None and module.__spec__.loader is not None
            module.__spec__.loader.exec_module(module)
    return module


def body_loaded() -> bool:
    """Whether ``torch._dynamo`` was imported with its body."""
    module = sys.modules.get(_PACKAGE)
    return module is not None and not isinstance(module, _Deferred)


@contextlib.contextmanager
def deferring(own_process: bool) -> Iterator[None]:
    """The block (see the module docstring); nothing unless ``own_process``."""
    package = _placeholder() if own_process and TOUCHPOINT.active() else None
    if package is None:
        yield
        return
    package._submodules_only = True
    try:
        yield
    finally:
        if isinstance(package, _Deferred):
            package._submodules_only = False


def _placeholder() -> _Deferred | None:
    """The package without its body: made now if nothing imported it yet; None where
    it was imported with its body."""
    import torch

    with _LOCK:
        found = sys.modules.get(_PACKAGE)
        if found is not None:
            return found if isinstance(found, _Deferred) else None
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return None
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _Deferred
        sys.modules[_PACKAGE] = module
        torch._dynamo = module
        return module  # type: ignore[return-value]


def _self_check() -> bool:
    """``torch._dynamo`` is a package whose configuration is a submodule of it."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations)))
    return (folder / "config.py").is_file() and (folder / "__init__.py").is_file()


TOUCHPOINT = Touchpoint(
    reaches="the import of the torch._dynamo package: its body deferred to the first "
    "attribute read that is not a submodule",
    tested=Releases((2, 13), (2, 14)),
    self_check=_self_check,
)
