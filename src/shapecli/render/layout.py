"""A drawing without Graphviz: one column, in the order the spec writes its entries.

The html page embeds a drawing. Graphviz draws it best; where Graphviz is not
installed, or the drawing is too large for it to lay out in reasonable time, this module
draws it instead (for ``-f svg`` too, in that case), in time proportional to its size.
Rather than a general layered layout (hundreds of lines to get crossings and clusters
right), it uses what a spec already gives: entries are written in dataflow order and a
group's members are contiguous. So every node goes on its own line, top to bottom; a
group is a box around its lines, indented by its nesting; an edge to the next line is a
short arrow, and any longer edge (a residual's skip, a branch, a named tensor read
further down) arcs out to the right. Parallel branches come one under the other instead
of side by side.

The SVG has the structure Graphviz's has (``g.node``, ``g.edge``, ``g.cluster`` with
the graph's ids and classes), so the page's script and styles work on either.
"""

from __future__ import annotations

from html import escape

from shapecli.graph import Graph, Group, Node, walk
from shapecli.render.dot import classes
from shapecli.render.drawing import group_title, node_lines, title

LINE = 13  # px per text line
CHAR = 6.2  # px per character at font-size 10, generously
GAP = 24  # px between two lines of the column (room for an edge label)
INDENT = 12  # px per level of nesting, on each side
HEADER = 18  # px for a group's title


def draw(graph: Graph) -> str:
    """An SVG drawing of ``graph``, one node per line, sized by the page that holds it."""
    rows = list(walk(graph))
    levels = max((level for level, _ in rows), default=0) + 1
    widths = {
        n.id: max(len(line) for line in node_lines(n)) * CHAR + 16
        for _, n in rows
        if isinstance(n, Node)
    }
    titles = [len(group_title(g)) * CHAR + 12 for _, g in rows if isinstance(g, Group)]
    inner = max([*widths.values(), *(t - 2 * INDENT for t in titles), 120.0])
    column = inner + 2 * INDENT * levels
    center = 10 + column / 2
    boxes: dict[str, tuple[float, float, float, float]] = {}  # id → x, y, width, height
    parts: list[str] = []
    clusters: list[str] = []  # drawn first, so nodes lie on top: the innermost last
    open_groups: list[tuple[Group, float, int]] = []
    y = 30.0
    for level, element in rows:
        if element is None:
            group, top, group_level = open_groups.pop()
            y += 6
            x = 10 + group_level * INDENT
            width = column - 2 * group_level * INDENT
            clusters.append(_cluster(group, x, top, width, y - top))
            y += GAP / 2
        elif isinstance(element, Group):
            open_groups.append((element, y, level))
            y += HEADER
        else:
            lines = node_lines(element)
            height = LINE * len(lines) + 8
            width = widths[element.id]
            boxes[element.id] = (center - width / 2, y, width, height)
            parts.append(_node(element, lines, boxes[element.id]))
            y += height + GAP
    order = {node_id: i for i, node_id in enumerate(boxes)}
    right = 10 + column
    edges = []
    for k, edge in enumerate(graph.edges):
        tail, head = boxes[edge.tail], boxes[edge.head]
        adjacent = order[edge.head] == order[edge.tail] + 1
        edges.append(_edge(edge.id, edge.label, edge.skip, tail, head, adjacent, right, k))
    heading = f'<text x="10" y="18" font-size="12">{escape(title(graph))}</text>'
    body = "\n".join([heading, *reversed(clusters), *parts, *edges])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {right + 150:.0f} {y + 10:.0f}" '
        'font-family="Helvetica,Arial,sans-serif" font-size="10">\n'
        f'<g id="graph0" class="graph">\n{body}\n</g>\n</svg>\n'
    )


def _cluster(group: Group, x: float, y: float, width: float, height: float) -> str:
    color = "#c62828" if group.failed else "#9aa5b1"
    return (
        f'<g id="{group.id}" class="cluster group"><title>{group.id}</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" rx="6" '
        f'fill="none" stroke="{color}" stroke-dasharray="5,2"/>'
        f'<text x="{x + 6:.1f}" y="{y + 13:.1f}">{escape(group_title(group))}</text></g>'
    )


def _node(node: Node, lines: list[str], box: tuple[float, float, float, float]) -> str:
    x, y, width, height = box
    fill = "#fff8e1" if node.kind in ("input", "output") else "#eef3fb"
    stroke = "#b08d2e" if node.kind in ("input", "output") else "#4a6fa5"
    if node.kind == "merge":
        fill, stroke = "#f2f2f2", "#888888"
    if node.failed:
        fill, stroke = "#fde8e8", "#c62828"
    dash = ' stroke-dasharray="4,3"' if node.status == "not-run" else ""
    shape = (
        f'<ellipse cx="{x + width / 2:.1f}" cy="{y + height / 2:.1f}" rx="{width / 2:.1f}" '
        f'ry="{height / 2:.1f}" fill="{fill}" stroke="{stroke}"/>'
        if node.kind != "layer"
        else f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" rx="4" '
        f'fill="{fill}" stroke="{stroke}"{dash}/>'
    )
    if node.collapsed:  # a second outline: more lies behind it
        shape = (
            f'<rect x="{x + 3:.1f}" y="{y - 3:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'rx="4" fill="{fill}" stroke="{stroke}"/>' + shape
        )
    texts = "".join(
        f'<text text-anchor="middle" x="{x + width / 2:.1f}" y="{y + 14 + i * LINE:.1f}">'
        f"{escape(line)}</text>"
        for i, line in enumerate(lines)
    )
    return (
        f'<g id="{node.id}" class="node {" ".join(classes(node))}"><title>{node.id}</title>'
        f"{shape}{texts}</g>"
    )


def _edge(
    edge_id: str,
    label: str,
    skip: bool,
    tail: tuple[float, float, float, float],
    head: tuple[float, float, float, float],
    adjacent: bool,
    right: float,
    k: int,
) -> str:
    tx, ty, tw, th = tail
    hx, hy, hw, hh = head
    if adjacent:
        x1, y1, x2, y2 = tx + tw / 2, ty + th, hx + hw / 2, hy
        path = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2 - 5:.1f}"
        tip = f"{x2 - 3:.1f},{y2 - 5:.1f} {x2 + 3:.1f},{y2 - 5:.1f} {x2:.1f},{y2:.1f}"
        lx, ly = x1 + 5, (y1 + y2) / 2 + 3
    else:  # arc out to the right, between the column and the labels' margin
        x1, y1, x2, y2 = tx + tw, ty + th / 2, hx + hw, hy + hh / 2
        bend = right + 12 + 9 * (k % 8)
        path = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2 + 5:.1f},{y2:.1f}"
        tip = f"{x2 + 5:.1f},{y2 - 3:.1f} {x2 + 5:.1f},{y2 + 3:.1f} {x2:.1f},{y2:.1f}"
        lx, ly = bend - 2, (y1 + y2) / 2
    dash = ' stroke-dasharray="5,3"' if skip else ""
    return (
        f'<g id="{edge_id}" class="edge{" skip" if skip else ""}"><title>{edge_id}</title>'
        f'<path d="{path}" fill="none" stroke="#666666"{dash}/>'
        f'<polygon points="{tip}" fill="#666666" stroke="#666666"/>'
        f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="9" fill="#444444">{escape(label)}</text></g>'
    )
