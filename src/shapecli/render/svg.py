"""The graph as an SVG drawing, laid out by Graphviz's ``dot`` (exit 2 without it)."""

from __future__ import annotations

from shapecli.graph import build_graph
from shapecli.render import Options, Rendered
from shapecli.render.dot import to_dot
from shapecli.render.graphviz import run_dot
from shapecli.render.problems import problems_text
from shapecli.report import Report


def render(report: Report, options: Options) -> Rendered:
    if not report.rows:
        return Rendered("", problems_text(report, options))
    svg = run_dot(to_dot(build_graph(report, options.depth)))
    return Rendered(svg, problems_text(report, options))
