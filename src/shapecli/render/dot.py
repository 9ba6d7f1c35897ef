"""The graph in Graphviz's DOT language — and the source of the svg and html drawings.

Groups are clusters (``subgraph cluster_g0``), a node that stands for more than its own
entry is a ``box3d``, merges are small circles, inputs and the output ovals; a
residual's identity shortcut is dashed. Every node, edge and cluster carries an ``id``
and a ``class``, which Graphviz copies into its SVG: the html page finds them there.
"""

from __future__ import annotations

from shapecli.graph import Graph, Group, Node, build_graph, walk
from shapecli.render import Options, Rendered
from shapecli.render.drawing import group_title, node_lines, title
from shapecli.render.problems import problems_text
from shapecli.report import Report, format_shapes
from shapecli.untrusted import visible

FONT = "Helvetica,Arial,sans-serif"

_HEADER = (
    f'  graph [fontname="{FONT}", fontsize=12, labelloc=t, labeljust=l, rankdir=TB, '
    "nodesep=0.25, ranksep=0.3, newrank=true];",
    f'  node [fontname="{FONT}", fontsize=10, shape=box, style="rounded,filled", '
    'fillcolor="#eef3fb", color="#4a6fa5", margin="0.12,0.05", height=0.3];',
    f'  edge [fontname="{FONT}", fontsize=9, color="#666666", fontcolor="#444444", arrowsize=0.6];',
)


def render(report: Report, options: Options) -> Rendered:
    if not report.rows:
        return Rendered("", problems_text(report, options))
    return Rendered(to_dot(build_graph(report, options.depth)), problems_text(report, options))


def quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped (a backslash starts DOT's escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(lines: list[str]) -> str:
    return '"' + "\\n".join(quote(line)[1:-1] for line in lines) + '"'


def to_dot(graph: Graph) -> str:
    name = quote(title(graph))
    lines = [f"digraph {name} {{", *_HEADER, f"  label={name};"]
    for level, element in walk(graph):
        indent = "  " * (level + 1)
        if element is None:
            lines.append(f"{indent}}}")
        elif isinstance(element, Group):
            lines += _cluster(element, indent)
        else:
            lines.append(indent + _node(element))
    for edge in graph.edges:
        attrs = [f'id="{edge.id}"', f"label={quote(edge.label)}"]
        if edge.skip:
            attrs += ['class="skip"', "style=dashed"]
        lines.append(f"  {edge.tail} -> {edge.head} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cluster(group: Group, indent: str) -> list[str]:
    color = "#c62828" if group.failed else "#9aa5b1"
    return [
        f"{indent}subgraph cluster_{group.id} {{",
        f'{indent}  id="{group.id}"; class="group"; label={quote(group_title(group))};',
        f'{indent}  style="rounded,dashed"; color="{color}"; fontsize=10; margin=10;',
    ]


def classes(node: Node) -> list[str]:
    """The classes of a node in the SVG: its kind, and what is special about it."""
    names: list[str] = [node.kind]
    names += ["collapsed"] if node.collapsed else []
    names += ["failed"] if node.failed else []
    names += ["not-run"] if node.status == "not-run" and not node.failed else []
    return names


def _node(node: Node) -> str:
    attrs = [f'id="{node.id}"', f'class="{" ".join(classes(node))}"']
    attrs.append(f"label={_label(node_lines(node))}")
    if node.kind == "merge":
        attrs += ["shape=circle", 'fillcolor="#f2f2f2"', 'color="#888888"', "width=0.3"]
        attrs += ["fixedsize=true" if len(node.name) == 1 else "margin=0.02"]
    elif node.kind in ("input", "output"):
        attrs += ["shape=oval", 'fillcolor="#fff8e1"', 'color="#b08d2e"']
    else:
        if node.collapsed:
            attrs += ["shape=box3d", 'style="filled"']
        if node.param_count == 0 and not node.failed:
            attrs.append('fillcolor="#f6f7f9"')
        if node.failed:
            attrs += ['fillcolor="#fde8e8"', 'color="#c62828"', "penwidth=2"]
        elif node.status == "not-run":
            attrs.append('style="rounded,dashed"')
        attrs.append(f"tooltip={quote(_tooltip(node))}")
    return f"{node.id} [{', '.join(attrs)}];"


def _tooltip(node: Node) -> str:
    given = format_shapes(node.input_shapes) or "?"
    made = format_shapes(node.output_shapes) or "?"
    where = f" · line {node.source.line}" if node.source and node.source.line else ""
    return f"{visible(node.path or '(root)')}: {given} → {made}{where}"
