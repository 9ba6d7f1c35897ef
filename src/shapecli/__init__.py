"""shapecli: inspect a PyTorch model described in YAML.

    >>> import shapecli
    >>> report = shapecli.inspect("configs/mlp.yaml", input="2x20")
    >>> report.totals.params
    7946

``import shapecli`` imports nothing else: not torch (seconds), and not even PyYAML,
because ``python -m shapecli`` imports this package *before* its ``__main__`` can
take the current directory off ``sys.path``. The API is resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shapecli.api import build, inspect, load, save
    from shapecli.errors import Problem, ShapecliError
    from shapecli.inputs import InputSpec
    from shapecli.report import Report

__all__ = [
    "InputSpec",
    "Problem",
    "Report",
    "ShapecliError",
    "build",
    "inspect",
    "load",
    "save",
]
__version__ = "0.1.0"

_HOMES = {
    "build": "shapecli.api",
    "inspect": "shapecli.api",
    "load": "shapecli.api",
    "save": "shapecli.api",
    "Problem": "shapecli.errors",
    "ShapecliError": "shapecli.errors",
    "InputSpec": "shapecli.inputs",
    "Report": "shapecli.report",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'shapecli' has no attribute {name!r}")
