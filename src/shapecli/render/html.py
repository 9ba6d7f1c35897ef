"""The graph as one self-contained html page: the drawing, the table, and a little script.

Everything is inline — styles, the SVG, the data, the script — and a Content Security
Policy forbids the page any request, so it opens the same from a laptop, an artifact
store or an email, with no network. The drawing is laid out by Graphviz's ``dot`` when
it is installed and the drawing is not too large for it
(:data:`~shapecli.render.graphviz.MAX_NODES`), else by :mod:`shapecli.render.layout`
(one column; a note says so).

The script (hand-written, no library) does four things: zoom (wheel, buttons) and pan
(drag) by moving the SVG's ``viewBox``; a node's details (shapes, parameters, entries
it stands for, the spec line, the error) on hover, pinned on click; folding a group (a
click on its title in the drawing, or on ▾ in the table) hides what is inside it in
both; and a click on a table row selects its node.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from shapecli.graph import Graph, Group, Node, build_graph, walk, within
from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.dot import to_dot
from shapecli.render.drawing import group_title, node_lines, title
from shapecli.render.graphviz import INSTALL_HINT, find_dot, run_dot, too_large
from shapecli.render.layout import draw
from shapecli.render.problems import problems_text
from shapecli.render.tree import visible_rows
from shapecli.report import Report, Row
from shapecli.untrusted import visible

FALLBACK_NOTE = (
    "Graphviz's `dot` was not found, so the drawing uses shapecli's one-column layout; "
    f"for Graphviz's: {INSTALL_HINT.split(', or ')[0]}"
)


def render(report: Report, options: Options) -> Rendered:
    problems = problems_text(report, options)
    if not report.rows:
        return Rendered("", problems)
    graph = build_graph(report, options.depth)
    svg, why = drawing(graph)
    note = "" if why is None else f"note: {why}\n"
    return Rendered(page(report, graph, svg, options.depth, why), problems + note)


def drawing(graph: Graph) -> tuple[str, str | None]:
    """The SVG to embed, and why shapecli laid it out rather than Graphviz (None:
    Graphviz did)."""
    if find_dot() is None:
        return draw(graph), FALLBACK_NOTE
    why = too_large(len(graph.nodes), len(graph.groups))
    if why is not None:
        return draw(graph), why
    return inline_svg(run_dot(to_dot(graph))), None


def inline_svg(svg: str) -> str:
    """Graphviz's SVG file as an element of a page: no XML prolog, doctype or comments,
    and no fixed size (the page sizes it)."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', "<svg", svg, count=1)


def page(report: Report, graph: Graph, svg: str, depth: int | None, note: str | None = None) -> str:
    """The page; ``note`` says why shapecli laid the drawing out (None: Graphviz did)."""
    shown = visible_rows(report, depth)
    summary = fmt.summary_lines(report, [row for row, _ in shown])
    problems = ["\n".join(fmt.problem_lines(p)) for p in (*report.errors, *report.warnings)]
    data = json.dumps(_data(report, graph), ensure_ascii=False, separators=(",", ":"))
    layout = "" if note is None else f"<p class=note>{escape(note)}</p>"
    return _PAGE.format(
        title=escape(title(graph)),
        summary="<br>".join(escape(line) for line in summary),
        problems="".join(f"<pre class=problem>{escape(p)}</pre>" for p in problems),
        layout=layout,
        svg=svg,
        rows="\n".join(_table_rows(report, graph, shown)),
        data=data.replace("<", "\\u003c"),  # nothing in it can close the script element
        style=_STYLE,
        script=_SCRIPT,
    )


def _data(report: Report, graph: Graph) -> dict[str, Any]:
    """What the script needs: each node's details, each group's contents."""
    by_path = {row.path: row for row in report.rows}
    nodes = {n.id: _details(report, n, by_path.get(n.path or "\0")) for n in graph.nodes}
    groups: dict[str, dict[str, Any]] = {
        g.id: {"title": group_title(g), "nodes": [], "groups": [], "edges": []}
        for g in graph.groups
    }
    within: dict[str | None, list[str]] = {None: []}  # each element: the groups around it
    opened: list[str] = []
    for level, element in walk(graph):  # once through: each element joins its groups
        del opened[level:]
        if element is None:
            continue
        for group_id in opened:
            groups[group_id]["groups" if isinstance(element, Group) else "nodes"].append(element.id)
        within[element.id] = list(opened)
        if isinstance(element, Group):
            opened.append(element.id)
    for edge in graph.edges:
        around_head = set(within.get(edge.head, ()))
        for group_id in within.get(edge.tail, ()):
            if group_id in around_head:
                groups[group_id]["edges"].append(edge.id)
    return {"nodes": nodes, "groups": groups}


def _details(report: Report, node: Node, row: Row | None) -> dict[str, str]:
    """The facts about a node the details panel lists, as text, in order."""
    details = {"title": " · ".join(node_lines(node)[:1])}
    if node.kind == "layer":
        details["path"] = visible(node.path or "(root)")
    if node.input_shapes:
        details["input"] = fmt.shapes(node.input_shapes)
    if node.output_shapes:
        details["output"] = fmt.shapes(node.output_shapes)
    if node.kind == "input" and node.type:
        details["dtype"] = node.type
    if row is not None and node.kind == "layer":
        if row.params and node.rows == 1:
            details["parameters"] = fmt.params(row.params)
        details["count"] = fmt.count(node.param_count)
        if node.rows > 1:
            details["stands for"] = f"{node.rows} entries"
        if row.source is not None:
            details["spec"] = visible(f"{report.spec}:{row.source.line}:{row.source.column}")
        details["status"] = node.status
        for problem in report.errors:
            if _under(problem.path, node.path):
                details["problem"] = visible(problem.message)
    return details


def _under(path: str | None, ancestor: str | None) -> bool:
    """Is the module at ``path`` the one at ``ancestor`` or inside it (None: neither)?"""
    if path is None or ancestor is None:
        return False
    return path == ancestor or within(path, ancestor)


def _table_rows(report: Report, graph: Graph, shown: list[tuple[Row, int]]) -> list[str]:
    """The report's rows as the table shows them, each linked to its node (or group)."""
    element: dict[str, str] = {n.path: n.id for n in graph.layers if n.path is not None}
    element.update({g.path: g.id for g in graph.groups})
    groups = {g.path for g in graph.groups}
    failing = {p.path for p in report.errors}
    out = []
    for i, (row, level) in enumerate(shown):
        owner, probe = None, row.path
        while owner is None and probe:
            owner = element.get(probe)
            probe = probe.rpartition(".")[0]
        has_children = i + 1 < len(shown) and shown[i + 1][1] > level
        fold = "<button class=fold title='fold'>▾</button>" if has_children else ""
        failed = row.status == "failed" and row.path in failing
        attrs = f' data-level="{level}"'
        attrs += f' data-node="{owner}"' if owner else ""
        attrs += f' data-group="{element[row.path]}"' if row.path in groups else ""
        attrs += " class=failed" if failed else ""
        name = (f"{fmt.FAIL_MARK} " if failed else "") + visible(row.label)
        cells = [
            f'<td style="padding-left:{0.4 + level * 1.1:.1f}em">{fold}{escape(name)}</td>',
            f"<td>{escape(fmt.type_label(row))}{'*' if row.inferred else ''}</td>",
            f"<td>{escape(fmt.row_inputs(report, row))}</td>",
            f"<td>{'cannot take it' if failed else escape(fmt.shapes(row.output_shapes))}</td>",
            f"<td>{escape(fmt.params(row.params))}</td>",
            f"<td class=num>{fmt.count(row.param_count) if row.param_count else '—'}</td>",
            f"<td class=num>{row.source.line if row.source else ''}</td>",
        ]
        out.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return out


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="shapecli graph">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class=summary>{summary}</p>
{problems}{layout}
</header>
<nav>
<button id=zoom-in title="zoom in">+</button><button id=zoom-out title="zoom out">&minus;</button>\
<button id=fit>fit</button><button id=fold-all>fold all</button>\
<button id=unfold-all>unfold all</button>
<span class=hint>scroll to zoom · drag to pan · hover or click a node for its details · \
click a box's title to fold it</span>
</nav>
<main>
<div id=view>
{svg}
</div>
<aside id=details><p class=hint>Hover over or click a node.</p></aside>
</main>
<table id=rows>
<thead><tr><th>Layer</th><th>Type</th><th>Input</th><th>Output</th><th>Parameters</th>\
<th>Count</th><th>Line</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<script type="application/json" id=graph-data>{data}</script>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #1f2328; }
h1 { font-size: 1.3em; margin: 0.8em 0 0.2em; }
.summary, .hint, .note { color: #59636e; font-size: 0.9em; margin: 0.2em 0; }
.problem { color: #b71c1c; background: #fdf2f2; padding: 0.5em; white-space: pre-wrap; }
nav { margin: 0.6em 0; display: flex; gap: 0.4em; align-items: center; flex-wrap: wrap; }
nav button { font: inherit; padding: 0.1em 0.7em; cursor: pointer; }
main { display: flex; gap: 1em; align-items: flex-start; }
#view { flex: 1; height: 75vh; border: 1px solid #d1d9e0; border-radius: 6px;
  overflow: hidden; cursor: grab; background: #fff; touch-action: none; }
#view svg { width: 100%; height: 100%; user-select: none; }
#details { width: 20em; position: sticky; top: 1em; font-size: 0.9em;
  overflow-wrap: anywhere; }
#details h2 { font-size: 1.05em; margin: 0 0 0.4em; }
#details dt { color: #59636e; font-size: 0.85em; margin-top: 0.4em; }
#details dd { margin: 0; font-family: ui-monospace, monospace; }
#view g.node { cursor: pointer; }
#view g.node.selected > :is(polygon, path, ellipse, rect) { stroke: #d97706; stroke-width: 3; }
#view g.cluster > text { cursor: pointer; }
#view g.cluster.folded > :is(polygon, path, rect) { fill: #e8eef7; }
#view .hidden { display: none; }
table { border-collapse: collapse; margin-top: 1.2em; font-size: 0.85em; }
th, td { text-align: left; padding: 0.15em 0.8em 0.15em 0.4em; white-space: nowrap; }
th { border-bottom: 1px solid #d1d9e0; }
td.num { text-align: right; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f6f8fa; }
tr.selected { background: #fff4d6 !important; }
tr.failed { color: #b71c1c; font-weight: 600; }
tr.hidden { display: none; }
button.fold { border: 0; background: none; padding: 0 0.3em 0 0; cursor: pointer; font: inherit; }
"""

_SCRIPT = """
(() => {
  'use strict';
  const data = JSON.parse(document.getElementById('graph-data').textContent);
  const view = document.getElementById('view');
  const svg = view.querySelector('svg');
  const details = document.getElementById('details');
  const rows = [...document.querySelectorAll('#rows tbody tr')];
  const byId = id => document.getElementById(id);

  // Zoom and pan: the viewBox is the camera.
  const box = svg.viewBox.baseVal;
  const home = {x: box.x, y: box.y, w: box.width, h: box.height};
  const show = () => svg.setAttribute('viewBox', `${cam.x} ${cam.y} ${cam.w} ${cam.h}`);
  // At first: the whole width, from the top, at most at 1pt = 1px (a tall network
  // fitted whole would be too small to read; `fit` shows it whole).
  const first = () => {
    const s = Math.max(home.w / view.clientWidth, 0.75), w = view.clientWidth * s;
    return {x: home.x + (home.w - w) / 2, y: home.y, w: w, h: view.clientHeight * s};
  };
  let cam = first();
  show();
  const zoom = (f, p) => {
    cam = {x: p.x - (p.x - cam.x) * f, y: p.y - (p.y - cam.y) * f, w: cam.w * f, h: cam.h * f};
    show();
  };
  const point = (x, y) => {
    const p = svg.createSVGPoint();
    p.x = x; p.y = y;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  };
  const middle = () => ({x: cam.x + cam.w / 2, y: cam.y + cam.h / 2});
  view.addEventListener('wheel', e => {
    e.preventDefault();
    zoom(Math.exp(Math.max(-1, Math.min(1, e.deltaY / 300))), point(e.clientX, e.clientY));
  }, {passive: false});
  let drag = null;
  view.addEventListener('pointerdown', e => {
    if (e.button === 0) drag = {x: e.clientX, y: e.clientY, moved: false};
  });
  window.addEventListener('pointermove', e => {
    if (!drag) return;
    const scale = Math.max(cam.w / svg.clientWidth, cam.h / svg.clientHeight);
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
    cam.x -= dx * scale; cam.y -= dy * scale;
    drag.x = e.clientX; drag.y = e.clientY;
    show();
  });
  window.addEventListener('pointerup', () => setTimeout(() => { drag = null; }));
  const dragged = () => drag !== null && drag.moved;
  byId('zoom-in').onclick = () => zoom(1 / 1.25, middle());
  byId('zoom-out').onclick = () => zoom(1.25, middle());
  byId('fit').onclick = () => { cam = {...home}; show(); };

  // Details: on hover, pinned by a click.
  let pinned = null;
  const describe = id => {
    const facts = data.nodes[id];
    if (!facts) {
      details.innerHTML = '<p class=hint>Hover over or click a node.</p>';
      return;
    }
    const heading = document.createElement('h2');
    heading.textContent = facts.title;
    const list = document.createElement('dl');
    for (const [key, value] of Object.entries(facts)) {
      if (key === 'title') continue;
      const dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = key; dd.textContent = value;
      list.append(dt, dd);
    }
    details.replaceChildren(heading, list);
  };
  const centre = el => {
    const b = el.getBBox();
    const m = svg.getScreenCTM().inverse().multiply(el.getScreenCTM());
    const p = svg.createSVGPoint();
    p.x = b.x + b.width / 2; p.y = b.y + b.height / 2;
    const c = p.matrixTransform(m);
    cam.x = c.x - cam.w / 2; cam.y = c.y - cam.h / 2;
    show();
  };
  const select = (id, move) => {
    document.querySelectorAll('.selected').forEach(el => el.classList.remove('selected'));
    pinned = id;
    const node = byId(id);
    if (node) node.classList.add('selected');
    rows.filter(r => r.dataset.node === id).forEach(r => r.classList.add('selected'));
    describe(id);
    if (move && node && !node.classList.contains('hidden')) centre(node);
  };
  for (const node of svg.querySelectorAll('g.node')) {
    node.addEventListener('mouseenter', () => describe(node.id));
    node.addEventListener('mouseleave', () => describe(pinned));
    node.addEventListener('click', () => { if (!dragged()) select(node.id, false); });
  }

  // Folding: a group's contents hidden in the drawing and in the table.
  const folded = new Set();
  const refreshTable = () => {
    let below = Infinity;
    for (const row of rows) {
      const level = Number(row.dataset.level);
      const hide = level > below;
      row.classList.toggle('hidden', hide);
      if (!hide) below = row.classList.contains('folded') ? level : Infinity;
      const button = row.querySelector('button.fold');
      if (button) button.textContent = row.classList.contains('folded') ? '▸' : '▾';
    }
  };
  const titles = new Map();
  for (const cluster of svg.querySelectorAll('g.cluster')) {
    const text = cluster.querySelector('text');
    if (!text) continue;
    titles.set(cluster.id, text.textContent);
    text.textContent = '▾ ' + text.textContent;
    text.addEventListener('click', () => {
      if (!dragged()) fold(cluster.id, !folded.has(cluster.id));
    });
  }
  const fold = (gid, on) => {
    if (on) folded.add(gid); else folded.delete(gid);
    const hidden = new Set();
    for (const g of folded) {
      const c = data.groups[g];
      [...c.nodes, ...c.groups, ...c.edges].forEach(x => hidden.add(x));
    }
    for (const el of svg.querySelectorAll('g.node, g.edge, g.cluster')) {
      el.classList.toggle('hidden', hidden.has(el.id));
    }
    const cluster = byId(gid), text = cluster && cluster.querySelector('text');
    if (cluster) cluster.classList.toggle('folded', on);
    if (text) text.textContent = (on ? '▸ ' : '▾ ') + titles.get(gid);
    rows.filter(r => r.dataset.group === gid).forEach(r => r.classList.toggle('folded', on));
    refreshTable();
  };
  for (const row of rows) {
    const button = row.querySelector('button.fold');
    if (button) button.addEventListener('click', e => {
      e.stopPropagation();
      const on = !row.classList.contains('folded');
      if (row.dataset.group) fold(row.dataset.group, on);
      else { row.classList.toggle('folded', on); refreshTable(); }
    });
    row.addEventListener('click', () => { if (row.dataset.node) select(row.dataset.node, true); });
  }
  byId('fold-all').onclick = () => Object.keys(data.groups).forEach(g => fold(g, true));
  byId('unfold-all').onclick = () => Object.keys(data.groups).forEach(g => fold(g, false));
  document.body.dataset.ready = 'true';
})();
"""
