"""shapecli: inspect a PyTorch model described in YAML.

    >>> import shapecli
    >>> report = shapecli.inspect("configs/mlp.yaml", input="2x20")
    >>> report.totals.params
    7946

``import shapecli`` imports nothing else: not torch (seconds), and not even PyYAML.

``python -m shapecli`` puts the working folder first on ``sys.path`` and imports this
package before ``__main__``; a checkout under review may hold a ``typing.py`` or
``pathlib.py``. So the first statement after ``import sys`` (a module every
interpreter has loaded before any code runs) takes the folder off the path, and only
then is anything else imported — ``from __future__ import annotations`` included,
which is why this module does without it.
"""

import sys


def _run_by_python_m() -> bool:
    """Whether Python is importing this package to run it as ``python -m shapecli``.

    While ``-m`` locates its module, ``sys.argv[0]`` is ``"-m"`` and the module's name
    is the token of the original command line just before the program's arguments
    (``-m shapecli`` or ``-mshapecli``). Another program run with ``-m`` that imports
    shapecli while it starts keeps its path as it is.
    """
    if sys.argv[:1] != ["-m"] or len(sys.orig_argv) < len(sys.argv):
        return False
    token = sys.orig_argv[-len(sys.argv)]
    name = token.partition("m")[2] if token.startswith("-") else token
    return name in ("shapecli", "shapecli.__main__")


# ``python -P`` (PYTHONSAFEPATH) puts no working folder on the path to begin with.
if _run_by_python_m() and not sys.flags.safe_path and sys.path:
    del sys.path[0]

from typing import TYPE_CHECKING, Any  # noqa: E402  (only now: see above)

if TYPE_CHECKING:
    from shapecli.api import build, initialize, inspect, load, save
    from shapecli.errors import Problem, ShapecliError
    from shapecli.inputs import InputSpec
    from shapecli.report import Report

__all__ = [
    "InputSpec",
    "Problem",
    "Report",
    "ShapecliError",
    "build",
    "initialize",
    "inspect",
    "load",
    "save",
]
__version__ = "0.1.0"

_HOMES = {
    "build": "shapecli.api",
    "initialize": "shapecli.api",
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
