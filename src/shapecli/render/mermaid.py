"""The graph as a Mermaid flowchart: pastes into a GitHub PR comment or README.

``flowchart TD``: groups are ``subgraph``\\ s, a node that stands for more than its own
entry is a subroutine box ``[[…]]``, merges are circles, inputs and the output are
parallelograms; a residual's identity shortcut is a dotted edge. Ids are generated
(``n0``, ``g0``: never a name from the spec) and every label is quoted with Mermaid's
entity codes for the characters that would end or confuse it, so no name in a spec
can break the chart.
"""

from __future__ import annotations

import json

from shapecli.graph import Graph, Group, Node, build_graph, walk
from shapecli.render import Options, Rendered
from shapecli.render.drawing import group_title, node_lines, title
from shapecli.render.problems import problems_text
from shapecli.report import Report

# Mermaid reads ``#name;`` and ``#123;`` as entity codes; these are the characters
# that could end a quoted label, start markup or an entity, or turn it into markdown.
_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}

_STYLES = {
    "io": "fill:#fff8e1,stroke:#b08d2e",
    "merge": "fill:#f2f2f2,stroke:#888888",
    "failed": "fill:#fde8e8,stroke:#c62828,stroke-width:2px,color:#b71c1c",
    "notrun": "stroke-dasharray:4 3",
}


def render(report: Report, options: Options) -> Rendered:
    if not report.rows:
        return Rendered("", problems_text(report, options))
    return Rendered(to_mermaid(build_graph(report, options.depth)), problems_text(report, options))


def text(line: str) -> str:
    """A label line with Mermaid's special characters written as entity codes."""
    return "".join(_ESCAPES.get(c, c) for c in line)


def label(lines: list[str]) -> str:
    return '"' + "<br/>".join(text(line) for line in lines) + '"'


def to_mermaid(graph: Graph) -> str:
    lines = ["---", f"title: {json.dumps(title(graph), ensure_ascii=False)}", "---"]
    lines.append("flowchart TD")
    for level, element in walk(graph):
        indent = "  " * (level + 1)
        if element is None:
            lines.append(f"{indent}end")
        elif isinstance(element, Group):
            lines.append(f"{indent}subgraph {element.id}[{label([group_title(element)])}]")
        else:
            lines.append(indent + _node(element))
    for edge in graph.edges:
        arrow = "-.->" if edge.skip else "-->"
        lines.append(f"  {edge.tail} {arrow}|{label([edge.label])}| {edge.head}")
    used = {name: ids for name, ids in _classes(graph).items() if ids}
    lines += [f"  classDef {name} {_STYLES[name]}" for name in used]
    lines += [f"  class {','.join(ids)} {name}" for name, ids in used.items()]
    for group in graph.groups:
        if group.failed:
            lines.append(f"  style {group.id} stroke:#c62828,stroke-width:2px")
    return "\n".join(lines) + "\n"


def _node(node: Node) -> str:
    text = label(node_lines(node))
    if node.kind == "merge":
        return f"{node.id}(({text}))"
    if node.kind in ("input", "output"):
        return f"{node.id}[/{text}/]"
    if node.collapsed:
        return f"{node.id}[[{text}]]"
    return f"{node.id}[{text}]"


def _classes(graph: Graph) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {"io": [], "merge": [], "failed": [], "notrun": []}
    for node in graph.nodes:
        if node.kind in ("input", "output"):
            classes["io"].append(node.id)
        elif node.kind == "merge":
            classes["merge"].append(node.id)
        elif node.failed:
            classes["failed"].append(node.id)
        elif node.status == "not-run":
            classes["notrun"].append(node.id)
    return classes
