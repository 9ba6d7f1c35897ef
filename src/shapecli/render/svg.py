"""The graph as an SVG drawing, laid out by Graphviz's ``dot`` (exit 2 without it).

A drawing too large for Graphviz to lay out in reasonable time (see
:data:`~shapecli.render.graphviz.MAX_NODES`) is laid out by shapecli's one-column layout
instead, and a note on stderr says so.
"""

from __future__ import annotations

from shapecli.graph import build_graph
from shapecli.render import Options, Rendered
from shapecli.render.dot import to_dot
from shapecli.render.graphviz import run_dot, too_large
from shapecli.render.layout import draw
from shapecli.render.problems import problems_text
from shapecli.report import Report


def render(report: Report, options: Options) -> Rendered:
    problems = problems_text(report, options)
    if not report.rows:
        return Rendered("", problems)
    graph = build_graph(report, options.depth)
    why = too_large(len(graph.nodes), len(graph.groups))
    if why is not None:
        return Rendered(draw(graph), problems + f"note: {why}\n")
    return Rendered(run_dot(to_dot(graph)), problems)
