"""Output formats: a name → renderer registry. Adding a format is adding one module.

A renderer is a pure function of a :class:`~shapecli.report.Report` and
:class:`Options`; it returns the text for stdout and the text for stderr, and prints
nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shapecli.report import Report


@dataclass(frozen=True)
class Options:
    depth: int | None = None  # None: every spec entry, no torch submodules (JSON: every row)
    color: bool = False
    paths: bool = False  # a column with each row's module path (what JSON and tie: use)
    width: int | None = None  # None: as wide as the table needs


@dataclass(frozen=True)
class Rendered:
    stdout: str
    stderr: str = ""


Renderer = Callable[[Report, Options], Rendered]


def renderers() -> dict[str, Renderer]:
    """Every report format by name (imported on use: rich costs time to import)."""
    from shapecli.render import json, markdown, table

    return {"table": table.render, "json": json.render, "markdown": markdown.render}


def graph_renderers() -> dict[str, Renderer]:
    """Every picture format of ``shapecli graph`` by name (see :mod:`shapecli.graph`)."""
    from shapecli.render import dot, html, mermaid, svg

    return {"mermaid": mermaid.render, "dot": dot.render, "svg": svg.render, "html": html.render}
