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
    every: bool = False  # diff: every unit, not only those that differ
    # diff: what the user passed for A and B (a saved JSON report is titled by its own
    # file, not by the spec it was made from); None: each report's spec
    sides: tuple[str, str] | None = None
    width: int | None = None  # None: as wide as the table needs


@dataclass(frozen=True)
class Rendered:
    stdout: str
    stderr: str = ""


Renderer = Callable[[Report, Options], Rendered]


def renderers() -> dict[str, Renderer]:
    """Every report format by name; each module is imported on use (rich costs time)."""
    return {"table": _table, "json": _json, "markdown": _markdown}


def _table(report: Report, options: Options) -> Rendered:
    if not report.rows:  # nothing to tabulate: only problems, which need no rich
        from shapecli.render.problems import problems_text

        return Rendered("", problems_text(report, options))
    from shapecli.render import table

    return table.render(report, options)


def _json(report: Report, options: Options) -> Rendered:
    from shapecli.render import json

    return json.render(report, options)


def _markdown(report: Report, options: Options) -> Rendered:
    from shapecli.render import markdown

    return markdown.render(report, options)


def graph_renderers() -> dict[str, Renderer]:
    """Every picture format of ``shapecli graph`` by name (see :mod:`shapecli.graph`)."""
    from shapecli.render import dot, html, mermaid, svg

    return {"mermaid": mermaid.render, "dot": dot.render, "svg": svg.render, "html": html.render}
