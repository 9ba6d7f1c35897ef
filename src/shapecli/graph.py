"""The architecture as a graph: nodes and edges drawn from a :class:`Report` alone.

Every picture format (mermaid, dot, svg, html) draws the same :class:`Graph`, built here
from the report's rows — never by reading the spec again — so the picture shows what
the dry run saw. Pure data in, pure data out: no torch, no I/O; linear in the rows.

What is drawn:

* **Nodes** are the report's rows at the chosen depth — one per call: a module called
  twice is drawn twice. By default that is the spec's entries as ``inspect`` shows
  them: repeat copies that did what the first copy did become one node (``1…11 ·
  block ×11, as 0``). With ``depth`` every entry down to that depth is drawn and a
  container cut off by it becomes one node (``h · block ×12``). torch's own
  submodules have no recorded dataflow, so they are never drawn.
* **Groups** are containers whose entries are drawn (a block, a ``Residual``, a repeat
  group): a box around their members.
* **Edges** are the graph's edges, as the report records them: each row's
  ``sources``, and each container's ``returns`` (what it gives back). A source inside
  something drawn as one node starts at that node; one that is a group starts at what
  the group returns. The label is the shape that flows: the producer's output shape.
* **Merge nodes**: a container that combines what it returns (``merge``: a Residual
  adds its body's output to its shortcut's or to its own input — the dashed *skip*
  edge —, a Parallel concatenates its branches) has a small node inside its group.
* **Inputs and the output**: one node per model input, one for the model's output.

Nothing is inferred from shapes. A failing spec is drawn up to the failing row, which
is marked (``failed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from shapecli.errors import Source
from shapecli.inputs import InputSpec, input_names
from shapecli.report import Origin, Report, Row, RowStatus, Shape, copies_label, format_shapes

NodeKind = Literal["input", "layer", "merge", "output"]

#: How a merge node is labelled, by the row's ``merge`` (else its own name).
MERGE_LABELS = {"add": "+", "mul": "×"}


@dataclass(frozen=True)
class Node:
    """One drawn box: a layer (or several rows drawn as one), a merge, an input, the
    output. ``rows`` counts the entries it stands for (``collapsed`` when more than its
    own entry hides behind it). An input's ``type`` is its dtype."""

    id: str
    kind: NodeKind
    name: str
    type: str
    path: str | None = None
    group: str | None = None  # the id of the innermost group it is drawn in
    param_count: int = 0
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    status: RowStatus = "ok"
    failed: bool = False  # the layer that could not take its input
    collapsed: bool = False
    rows: int = 1
    shared: tuple[str, ...] = ()  # ``weight = wte.weight``: parameters that live elsewhere
    source: Source | None = None


@dataclass(frozen=True)
class Group:
    """A container whose members are drawn: a box around them."""

    id: str
    name: str
    type: str
    path: str
    parent: str | None
    param_count: int = 0
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    status: RowStatus = "ok"
    failed: bool = False
    source: Source | None = None


@dataclass(frozen=True)
class Edge:
    """A tensor flowing from ``tail`` to ``head``; ``arg`` is the keyword it is passed
    as; ``skip`` marks a residual's identity shortcut."""

    id: str
    tail: str
    head: str
    shapes: tuple[Shape, ...]
    arg: str | None = None
    skip: bool = False

    @property
    def label(self) -> str:
        text = format_shapes(self.shapes)
        return f"{self.arg}: {text}" if self.arg else text


@dataclass(frozen=True)
class Graph:
    name: str  # the model's
    inputs: tuple[InputSpec, ...]
    nodes: tuple[Node, ...] = ()
    groups: tuple[Group, ...] = ()
    edges: tuple[Edge, ...] = ()
    _order: tuple[str, ...] = field(default=(), repr=False)  # nodes and groups, pre-order

    def contents(self) -> dict[str | None, list[Node | Group]]:
        """Each group's members (``None``: the top level), in the order they are written."""
        by_id: dict[str, Node | Group] = {n.id: n for n in self.nodes}
        by_id.update({g.id: g for g in self.groups})
        tree: dict[str | None, list[Node | Group]] = {None: [], **{g.id: [] for g in self.groups}}
        for element_id in self._order:
            element = by_id[element_id]
            parent = element.group if isinstance(element, Node) else element.parent
            tree[parent].append(element)
        return tree

    @property
    def layers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "layer")


def build_graph(report: Report, depth: int | None = None) -> Graph:
    """The graph of ``report``: its entries at ``depth`` (``None``: as ``inspect`` shows
    them), with every edge the rows record."""
    return _Builder(report, depth).build()


def rows_up_to_failure(report: Report) -> list[Row]:
    """The rows the dry run reached: after a failure, the ones after it are left out."""
    rows = list(report.rows)
    failing = [i for i, r in enumerate(rows) if r.status == "failed"]
    return rows[: failing[-1] + 1] if failing else rows


#: A row: its module's path and which call of it.
Key = tuple[str, int]


def key(row: Row) -> Key:
    return (row.path, row.call)


def within(path: str, ancestor: str) -> bool:
    """Is the module at ``path`` inside the one at ``ancestor`` (the root holds every
    module, itself included)?"""
    return ancestor == "" or path.startswith(ancestor + ".")


class _Builder:
    def __init__(self, report: Report, depth: int | None) -> None:
        self.report = report
        self.depth = depth
        self.rows = rows_up_to_failure(report)
        self.by_key = {key(r): r for r in self.rows}
        # the row tree: each row's parent is the row it was called inside (the nearest
        # row before it whose path contains its path); entries are drawn, torch's own
        # submodules are not
        self.parent: dict[Key, Key] = {}
        self.children: dict[Key, list[Row]] = {}
        stack: list[Row] = []
        entries: list[Row] = []
        for row in self.rows:
            while stack and not within(row.path, stack[-1].path):
                stack.pop()
            while entries and not within(row.path, entries[-1].path):
                entries.pop()
            if stack:
                self.parent[key(row)] = key(stack[-1])
            if row.entry and entries:
                self.children.setdefault(key(entries[-1]), []).append(row)
            stack.append(row)
            if row.entry:
                entries.append(row)
        self.failing = {
            p.path for p in report.errors if p.path is not None and (p.path, 0) in self.by_key
        }
        self.nodes: dict[str, Node] = {}
        self.groups: dict[str, Group] = {}
        self.order: list[str] = []
        self.element_of: dict[Key, str] = {}  # a drawn row → its node or group id
        self.group_rows: dict[str, Row] = {}  # group id → its row
        self.merges: dict[str, str] = {}  # group id → its merge node id
        self.edges: dict[tuple[str, str, bool], Edge] = {}
        self.inputs: dict[str, str] = {}  # model input name → node id
        self.layer_count = 0

    def build(self) -> Graph:
        named = (self.report.name, self.report.inputs)
        root = self.by_key.get(("", 0))
        if root is None:
            return Graph(*named)
        for name, spec in zip(input_names(self.report.inputs), self.report.inputs, strict=True):
            node_id = f"i{len(self.inputs)}"
            self.inputs[name] = node_id
            node = Node(node_id, "input", name, spec.dtype, output_shapes=(spec.dims,))
            self._add_node(node)
        top = self._place(root, None)
        for row in self.rows:
            self._edges_into(row)
        for group_id, merge_id in self.merges.items():
            self._edges_into_merge(group_id, merge_id)
        if root.status == "ok" and root.output_shapes:
            out = Node("y0", "output", "output", "output", output_shapes=root.output_shapes)
            self._add_node(out)
            for tail in self._outputs(top) if top in self.groups else [top]:
                self._edge(tail, "y0")
        return Graph(
            *named,
            tuple(self.nodes.values()),
            tuple(g for g in self.groups.values() if g.path != ""),
            tuple(self.edges.values()),
            tuple(self.order),
        )

    # -- the tree of drawn rows -----------------------------------------------------------

    def _shown_children(self, row: Row) -> list[list[Row]]:
        """The entries under ``row`` that are drawn, each as a run: one row, or a run of
        repeat copies that did what the first copy did (drawn as one node)."""
        children = self.children.get(key(row), [])
        if self.depth is not None:
            return [[c] for c in children if c.depth <= self.depth]
        runs: list[list[Row]] = []
        for child in children:
            if child.same_as is not None and runs and runs[-1][-1].same_as is not None:
                runs[-1].append(child)
            else:
                runs.append([child])
        return runs

    def _place(self, row: Row, parent: str | None) -> str:
        """Draw ``row`` in group ``parent``: as a group of its drawn entries, or a node."""
        runs = self._shown_children(row)
        if not runs:
            return self._node_for([row], parent, run=False)
        group_id = "root" if row.path == "" else f"g{len(self.groups) - 1}"
        group = Group(
            group_id,
            row.name,
            _type_label(row),
            row.path,
            parent,
            row.param_count,
            row.input_shapes,
            row.output_shapes,
            row.status,
            row.path in self.failing,
            row.source,
        )
        self.groups[group_id] = group
        self.group_rows[group_id] = row
        self.element_of[key(row)] = group_id
        if row.path != "":  # the root is the whole picture, not a box in it
            self.order.append(group_id)
        inner = None if row.path == "" else group_id
        for run in runs:
            if self.depth is None and run[0].same_as is not None:
                self._node_for(run, inner, run=True)
            else:
                self._place(run[0], inner)
        if row.merge is not None and row.status == "ok":
            merge_id = f"m{len(self.merges)}"
            self.merges[group_id] = merge_id
            label = MERGE_LABELS.get(row.merge, row.merge)
            node = Node(
                merge_id, "merge", label, row.type, path=row.path, group=inner,
                output_shapes=row.output_shapes,
            )  # fmt: skip
            self._add_node(node)
        return group_id

    def _node_for(self, rows: list[Row], group: str | None, run: bool) -> str:
        """One layer node for a row, or for a run of repeat copies (``1…11 · block ×11,
        as 0``), standing also for every entry under them."""
        first, last = rows[0], rows[-1]
        node_id = f"n{self.layer_count}"
        self.layer_count += 1
        if not run or first.same_as is None:
            name, type_ = first.label, _type_label(first)
        else:
            name, type_ = copies_label(rows)
        under = sum(self._count_under(r) for r in rows)
        statuses = {r.status for r in rows}
        node = Node(
            node_id,
            "layer",
            name,
            type_,
            first.path,
            group,
            sum(r.param_count for r in rows),
            first.input_shapes,
            last.output_shapes,
            "failed" if "failed" in statuses else "not-run" if "not-run" in statuses else "ok",
            any(p == r.path or within(p, r.path) for p in self.failing for r in rows),
            collapsed=under > 0 or run,
            rows=len(rows) + under,
            shared=tuple(
                f"{p.name} = {p.shared_with}"
                for p in first.params
                if p.shared_with and first.call == 0
            ),
            source=first.source,
        )
        self._add_node(node)
        for row in rows:
            self.element_of[key(row)] = node_id
        return node_id

    def _count_under(self, row: Row) -> int:
        """How many entries lie under ``row``."""
        return sum(1 + self._count_under(c) for c in self.children.get(key(row), []))

    def _add_node(self, node: Node) -> None:
        self.nodes[node.id] = node
        self.order.append(node.id)

    # -- edges ----------------------------------------------------------------------------

    def _owner(self, at: Key) -> str | None:
        """The node or group the row at ``at`` is drawn as, or drawn inside of."""
        probe: Key | None = at
        while probe is not None:
            element = self.element_of.get(probe)
            if element is not None:
                return element
            probe = self.parent.get(probe)
        return None

    def _outputs(self, group_id: str) -> list[str]:
        """Where a drawn group's output starts: its merge node, or what it returns."""
        if group_id in self.merges:
            return [self.merges[group_id]]
        return self._returned(self.group_rows[group_id])

    def _tails(self, origin: Origin) -> list[str]:
        """Where the tensor ``origin`` names starts in the picture: its node, what its
        group returns, or — for a row not drawn itself (a Residual's lone body list,
        torch's own submodules) — the node it is drawn inside, or what it returns."""
        if origin.path is None:
            if origin.input == "*":
                return list(self.inputs.values())
            return [self.inputs[origin.input]] if origin.input in self.inputs else []
        at = (origin.path, origin.call)
        element = self.element_of.get(at)
        if element is not None:
            return self._outputs(element) if element in self.groups else [element]
        owner = self._owner(at)
        row = self.by_key.get(at)
        if owner is None or owner in self.nodes or row is None:
            return [owner] if owner is not None else []
        return self._returned(row)

    def _returned(self, row: Row) -> list[str]:
        """Where what ``row`` returns starts, each place once."""
        tails: list[str] = []
        for origin in row.returns:
            tails += [t for t in self._tails(origin) if t not in tails]
        return tails

    def _edges_into(self, row: Row) -> None:
        """The edges of one row's sources, into the node it is drawn as. A group's own
        sources are read by its members (or its merge), so they draw nothing here."""
        head = self._owner(key(row))
        if head is None or head in self.groups:
            return
        own = self.nodes[head].path == row.path
        for origin in row.sources:
            source = self.by_key.get((origin.path, origin.call)) if origin.path else None
            for tail in self._tails(origin):
                if tail != head:
                    self._edge(tail, head, origin.arg if own else None, source)

    def _edges_into_merge(self, group_id: str, merge_id: str) -> None:
        """What a merge combines: the rows inside its group it returns, and — drawn as a
        dashed skip — anything from outside (a Residual's own input)."""
        row = self.group_rows[group_id]
        for origin in row.returns:
            inside = origin.path is not None and within(origin.path, row.path)
            for tail in self._tails(origin):
                self._edge(tail, merge_id, skip=not inside)

    def _edge(
        self,
        tail: str,
        head: str,
        arg: str | None = None,
        source: Row | None = None,
        skip: bool = False,
    ) -> None:
        """An edge labelled with what flows: the tail node's output, or where that is not
        one tensor's (a container drawn as one node that never ran itself, such as a
        ``ModuleList``), the output of the row the edge comes from."""
        key_ = (tail, head, skip)
        if key_ in self.edges:
            return
        shapes = self.nodes[tail].output_shapes or (source.output_shapes if source else ())
        self.edges[key_] = Edge(f"e{len(self.edges)}", tail, head, shapes, arg, skip)


def _type_label(row: Row) -> str:
    return f"{row.type} ×{row.repeat}" if row.repeat else row.type


def walk(graph: Graph) -> Iterator[tuple[int, Node | Group | None]]:
    """The graph's nodes and groups in drawing order, with their nesting level; ``None``
    closes the group opened last (for formats that nest with begin/end)."""
    tree = graph.contents()

    def visit(parent: str | None, level: int) -> Iterator[tuple[int, Node | Group | None]]:
        for element in tree[parent]:
            yield level, element
            if isinstance(element, Group):
                yield from visit(element.id, level + 1)
                yield level, None

    yield from visit(None, 0)
