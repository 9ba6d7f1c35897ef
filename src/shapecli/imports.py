"""The one rule for importing user code: only packages the command line allows.

A spec arrives in a pull request; ``shapecli`` runs in CI next to secrets. So a type
name like ``mypkg.layers.Block`` (in a spec) or a Python model ``mypkg.models:net``
(on the command line) is imported only when ``--allow-import mypkg`` (or a
sub-package of what it names) says so — never because a file asks — and the refusal
is the same ``import-denied`` problem wherever the name was written.
"""

from __future__ import annotations

from collections.abc import Iterable

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
