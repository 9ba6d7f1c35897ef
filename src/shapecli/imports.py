"""The one rule for importing user code: only packages the command line allows.

A spec arrives in a pull request; ``shapecli`` runs in CI next to secrets. So a type
name like ``mypkg.layers.Block`` (in a spec) or a Python model ``mypkg.models:net``
(on the command line) is imported only when ``--allow-import mypkg`` (or a
sub-package of what it names) says so — never because a file asks — and the refusal
is the same ``import-denied`` problem wherever the name was written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from shapecli.errors import Source, fail


def allowed(module: str, allow: Iterable[str]) -> bool:
    """Is the module ``module`` inside one of the packages ``allow`` names? (A prefix of
    a name is not a package: ``--allow-import shapecli`` does not allow ``shapecli_x``.)"""
    return any(module == a or module.startswith(a + ".") for a in allow)


def check_allowed(name: str, module: str, allow: Iterable[str], source: Source | None) -> None:
    """Raise ``import-denied`` unless ``module`` (the home of ``name``, as written) may
    be imported."""
    if not allowed(module, allow):
        package = module.split(".", maxsplit=1)[0]
        raise fail(
            "import-denied",
            f"`{name}` is user code; shapecli imports it only when allowed",
            source,
            hint=f"run with `--allow-import {package}` if you trust that package",
        )


def not_found_hint(module: str, error: BaseException) -> str | None:
    """A hint for an import of ``module`` that failed with ``error``, when the package is
    right there in the current folder: shapecli does not import from it (see the
    module docstring of :mod:`shapecli`), so it must be put on the path on purpose."""
    package = module.split(".", maxsplit=1)[0]
    missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if missing is None or missing.split(".", maxsplit=1)[0] != package:
        return None  # the package was found; something it imports was not
    here = Path.cwd()
    if not ((here / package).is_dir() or (here / f"{package}.py").is_file()):
        return None
    return (
        f"`{package}` is in the current folder, which shapecli does not import from; put "
        f"it on the path on purpose: PYTHONPATH=. shapecli … (or pip install -e . there)"
    )
