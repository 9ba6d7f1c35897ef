"""Output formats: one registry per command, name → renderer. Adding a format is
adding one module and one line here.

A renderer is a pure function of what the command made (a
:class:`~shapecli.report.Report`, a lint result, a diff, a list of layers) and
:class:`Options`; it returns the text for stdout and the text for stderr, and prints
nothing itself. Each registry also says how a format reports a run that made nothing
but problems (a bad command line, an unreadable file): a JSON format as one document on
stdout — the module's ``failure`` — every other as the problems on stderr. The
command line takes its ``--format`` choices from here.

Renderer modules are imported on use: rich costs more than a YAML error's whole run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shapecli.errors import Problem
from shapecli.report import Report, failed_report


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


@dataclass(frozen=True)
class Formats:
    """One command's formats: name → ``module:function`` of its renderer, and of the
    failure document of the formats that have one (JSON's)."""

    renderers: dict[str, str]
    failures: dict[str, str]

    def __iter__(self) -> Iterator[str]:
        return iter(self.renderers)

    def __getitem__(self, name: str) -> Callable[[Any, Options], Rendered]:
        renderer: Callable[[Any, Options], Rendered] = _load(self.renderers[name])
        return renderer

    def failure(self, name: str, problems: tuple[Problem, ...], options: Options) -> Rendered:
        """What format ``name`` prints for a run that made nothing but ``problems``."""
        if name in self.failures:
            rendered: Rendered = _load(self.failures[name])(problems, options)
            return rendered
        from shapecli.render.problems import problems_text

        return Rendered("", problems_text(failed_report("", "", (), *problems), options))


def _load(where: str) -> Any:
    module, _, function = where.partition(":")
    return getattr(importlib.import_module(module), function)


#: ``inspect``: the report (``table`` shows only problems, without rich, when nothing ran).
REPORT_FORMATS = Formats(
    {
        "table": "shapecli.render:table_unless_empty",
        "json": "shapecli.render.json:render",
        "markdown": "shapecli.render.markdown:render",
    },
    {"json": "shapecli.render.json:failure"},
)
#: ``graph``: the picture (see :mod:`shapecli.graph`).
GRAPH_FORMATS = Formats(
    {
        "mermaid": "shapecli.render.mermaid:render",
        "dot": "shapecli.render.dot:render",
        "svg": "shapecli.render.svg:render",
        "html": "shapecli.render.html:render",
    },
    {},
)
#: ``lint``: a line per problem, one JSON document, or GitHub annotations.
LINT_FORMATS = Formats(
    {
        "text": "shapecli.render.lint:render_text",
        "json": "shapecli.render.lint:render_json",
        "github": "shapecli.render.lint:render_github",
    },
    {"json": "shapecli.render.lint:failure"},
)
#: ``diff``.
DIFF_FORMATS = Formats(
    {
        "table": "shapecli.render.diff:render_table",
        "json": "shapecli.render.diff:render_json",
        "markdown": "shapecli.render.diff:render_markdown",
    },
    {"json": "shapecli.render.json:failure"},
)
#: ``layers``.
LAYERS_FORMATS = Formats(
    {"text": "shapecli.render.layers:render_text", "json": "shapecli.render.layers:render_json"},
    {},
)


def table_unless_empty(report: Report, options: Options) -> Rendered:
    """The table; when nothing ran, only the problems, which need no rich."""
    if not report.rows:
        from shapecli.render.problems import problems_text

        return Rendered("", problems_text(report, options))
    from shapecli.render import table

    return table.render(report, options)
