"""Two reports, call by call: what changed in structure, types, arguments and shapes.

Writing a spec for a published network ends with one question — is it the same network?
— and a pull request that edits a config asks another — what did it change? Both are
answered on :class:`~shapecli.report.Report`\\ s, however they were made (a spec, a
saved JSON report, a Python model).

**What is compared.** The *units* of each model: every call of a leaf module, and the
parameters a container owns itself. A unit pairs with a unit of the other model, or is
added or removed. Two paired units differ in their type (a ``LazyLinear`` is a
``Linear``), their constructor arguments (``stride``, ``dilation``…, as the built
modules hold them), their parameters' shapes, what their tied parameters are tied to
(the paired module, or another), or their output shapes. ``inplace`` is not compared:
it changes how a layer runs, not what it computes. A module never called computes
nothing: it is left out unless it owns parameters.

**How units are paired: by structure.** The report's rows are the model's call tree (one
row per call, so a module called twice pairs call by call with two layers). The
children of two paired calls are aligned as sequences (difflib's, without its junk
heuristic) of what each child *is*: a leaf by its type (first with its shapes, then
without), a container by the container of the other side it pairs with. Two containers
pair when the sequences put them in the same place and they hold the same kinds of
layers (or mostly the same layers), when they hold exactly the same layers wherever
they are, or when most of the layers in one pair with layers in the other (a first
alignment of all their leaves, in order, says which). A container with no partner — a
spec's ``Residual`` where the Python model calls its layers directly — is opened, its
children taking its place. Paired containers are aligned the same way inside, so a
layer moved from one block to the next is a change, and an inserted layer is added
rather than shifting everything after it.

**Running a module again.** A ``Ref`` in a spec and a later call of a module with
parameters in a Python model both run a module whose weights are already counted: they
pair when they run paired modules. A parameter-free module called twice (one pooling
layer after each block) pairs like two separate layers.

**What a Python model cannot show.** Its rows are its module tree's calls, which leave
out what ``forward`` does with functions (``F.relu``, ``torch.flatten``). So when one
side is a Python model, a parameter-free layer found only on the other side is
*unseen*, not removed: it is listed, and it does not make the models differ.
"""

from __future__ import annotations

import ast
import difflib
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from shapecli.errors import fail
from shapecli.inputs import InputError, InputSpec, merge_inputs
from shapecli.report import ParamInfo, Report, Row, Shape, format_shape, format_shapes

Status = Literal["same", "changed", "added", "removed", "unseen"]
Kind = Literal["type", "arguments", "parameters", "ties", "output"]

#: Arguments that change how a layer runs, not what it computes.
NOT_COMPARED = frozenset({"inplace"})
#: How a ``Ref`` row's type starts (the rest is its target's path).
REF = "Ref → "


@dataclass(frozen=True)
class Difference:
    """One way two paired units differ, in words."""

    kind: Kind
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Change:
    """One unit of either model: paired (same or changed), or only on one side."""

    status: Status
    a: Row | None
    b: Row | None
    differences: tuple[Difference, ...] = ()

    @property
    def delta(self) -> int:
        """How many more parameters the unit owns in B."""
        return own_count(self.b) - own_count(self.a)


@dataclass(frozen=True)
class Diff:
    a: Report
    b: Report
    changes: tuple[Change, ...]

    @property
    def differs(self) -> bool:
        """Does anything differ (units, totals, the model's output, the inputs)?"""
        if any(c.status not in ("same", "unseen") for c in self.changes):
            return True
        if self.a.totals.params != self.b.totals.params or self.inputs_differ:
            return True
        return self.output(self.a) != self.output(self.b)

    @property
    def inputs_differ(self) -> bool:
        """Were the two models run with different inputs (a saved report's and a spec's
        own ``input:``)? Then their shapes differ for that reason too."""
        return inputs_key(self.a.inputs) != inputs_key(self.b.inputs)

    @staticmethod
    def output(report: Report) -> tuple[Shape, ...]:
        return report.rows[0].output_shapes if report.rows else ()

    def count(self, status: Status) -> int:
        return sum(1 for c in self.changes if c.status == status)


def inputs_key(inputs: tuple[InputSpec, ...]) -> tuple[tuple[object, ...], ...]:
    """What makes two runs' inputs the same: shapes and dtypes (not their names)."""
    return tuple((i.dims, i.dtype) for i in inputs)


def check_inputs(report: Report, given: tuple[InputSpec, ...], source: str) -> None:
    """``--input`` is for both sides, but a saved report is not run again: it is compared
    only when it was made with those inputs (never two models run on different inputs
    under one ``--input``). Raises ``input-invalid`` otherwise."""
    if not given:
        return
    try:
        wanted = inputs_key(merge_inputs(report.inputs, given))
    except InputError:
        wanted = ()
    if wanted != inputs_key(report.inputs):
        made = ", ".join(str(i) for i in report.inputs) or "no input"
        asked = ", ".join(str(i) for i in given)
        raise fail(
            "input-invalid",
            f"--input {asked} cannot apply to `{source}`: it is a saved report, made with "
            f"input {made}, and a saved report is not run again",
            hint="drop --input to compare with the input it was made with, or save it again "
            f"with that input (shapecli inspect SPEC -i {asked} -f json)",
        )


def own_count(row: Row | None) -> int:
    return sum(p.count or 0 for p in row.params) if row is not None else 0


def plain_type(name: str) -> str:
    """A type as torch knows it: ``LazyLinear`` is a ``Linear``, ``torch.nn.ReLU`` a ``ReLU``."""
    return name.rsplit(".", 1)[-1].removeprefix("Lazy")


# -- the call tree -------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A call in the call tree: a container (``members``), or a unit the alignment pairs.

    ``kind`` and ``params``, ``arguments`` are what is compared: for a ``Ref``, its
    target's; ``kind`` None (a container's own parameters, the root's) compares no type.
    ``rerun`` marks a call that runs again a container with parameters: compared by what
    its parameters are tied to.
    """

    row: Row
    key: Hashable
    members: list[Node] = field(default_factory=list)
    kind: str | None = None
    arguments: tuple[tuple[str, str], ...] = ()
    params: tuple[ParamInfo, ...] = ()
    rerun: bool = False
    leaves: list[Node] = field(init=False)

    def __post_init__(self) -> None:
        self.leaves = [leaf for m in self.members for leaf in m.leaves] or [self]

    @property
    def group(self) -> bool:
        return bool(self.members)


@dataclass
class _Raw:
    row: Row
    kids: list[_Raw] = field(default_factory=list)


def call_tree(report: Report) -> Node | None:
    """The report's rows as the tree of calls they are: a row is inside the nearest
    open row above it whose module contains its module (rows are in the order calls
    began, and a module's calls happen inside its container's). A module never called
    computes nothing: it is left out unless it owns parameters (which count)."""
    rows = [r for r in report.rows if r.status == "ok" or (r.status == "not-run" and r.params)]
    if not rows:
        return None
    root = _Raw(rows[0])
    stack = [root]
    for row in rows[1:]:
        while len(stack) > 1 and not _inside(row.path, stack[-1].row.path):
            stack.pop()
        raw = _Raw(row)
        stack[-1].kids.append(raw)
        stack.append(raw)
    firsts: dict[str, _Raw] = {}
    for raw in _walk(root):
        firsts.setdefault(raw.row.path, raw)
    return _node(root, firsts)


def _inside(path: str, container: str) -> bool:
    """Is the module at ``path`` inside the one at ``container`` (the root holds all)?"""
    return path.startswith(container + ".") if container else path != ""


def _walk(raw: _Raw) -> Iterator[_Raw]:
    yield raw
    for kid in raw.kids:
        yield from _walk(kid)


def _node(raw: _Raw, firsts: dict[str, _Raw]) -> Node:
    row = raw.row
    if row.type.startswith(REF):
        target = firsts.get(row.type.removeprefix(REF))
        if target is not None and not target.kids:  # a layer run again: it is that layer
            return _leaf(row, target.row, row.params)
        return Node(row, ("rerun",), params=row.params, rerun=True)
    if raw.kids and row.call and any(r.row.params for r in _walk(raw)):
        params = tuple(p for r in _walk(raw) for p in r.row.params)
        return Node(row, ("rerun",), params=params, rerun=True)
    if not raw.kids:
        return _leaf(row, row, row.params)
    members = [_node(kid, firsts) for kid in raw.kids]
    if row.params:  # what the container owns itself is a unit of its own
        kind = plain_type(row.type) if row.path else None
        own = Node(row, ("own", kind), kind=kind, arguments=row.arguments, params=row.params)
        members.insert(0, own)
    return Node(row, ("group",), members=members)


def _leaf(row: Row, layer: Row, params: tuple[ParamInfo, ...]) -> Node:
    kind = plain_type(layer.type)
    return Node(row, ("layer", kind), kind=kind, arguments=layer.arguments, params=params)


# -- pairing -------------------------------------------------------------------------------


@dataclass
class _Pairing:
    """What the alignment found: units in order, paired or alone, and each paired
    module's path in B (for what tied parameters are tied to)."""

    units: list[tuple[Node | None, Node | None]] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    def pair(self, a: Node, b: Node) -> None:
        if a.row.call == 0 and b.row.call == 0:
            self.paths.setdefault(a.row.path, b.row.path)
        if a.group and b.group:
            self.units.extend(_container_arguments(a, b))
            _align(a.members, b.members, self)
        else:
            self.units.append((a, b))

    def alone(self, node: Node, side: Literal["a", "b"]) -> None:
        for leaf in node.leaves:
            self.units.append((leaf, None) if side == "a" else (None, leaf))


def _container_arguments(a: Node, b: Node) -> list[tuple[Node, Node]]:
    """Two paired containers of one type whose arguments differ (an ``Attention``'s
    ``heads`` or ``causal`` change what its children compute, not their shapes): a unit
    of their own, to report the change. Containers of different types pair for their
    contents only (a spec's ``Residual`` and a Python model's block), as before."""
    kind = plain_type(a.row.type)
    if not a.row.path or kind != plain_type(b.row.type):
        return []
    if not _argument_changes(a.row.arguments, b.row.arguments):
        return []
    own_a = Node(a.row, ("own", kind), kind=kind, arguments=a.row.arguments)
    own_b = Node(b.row, ("own", kind), kind=kind, arguments=b.row.arguments)
    return [(own_a, own_b)]


def _align(left: list[Node], right: list[Node], found: _Pairing) -> None:
    """Pair two lists of sibling calls (see the module docstring)."""
    partners = _leaf_partners(left, right)
    left, right, groups = _pair_groups(left, right, partners)

    def by(key: Callable[[Node], Hashable]) -> Callable[[Node], Hashable]:
        return lambda node: groups.token(node, key)

    for same, run_a, run_b in _runs_of(left, right, [by(_exactly), by(_kind)]):
        if same:
            for a, b in zip(run_a, run_b, strict=True):
                found.pair(a, b)
            continue
        for a in run_a:  # containers out of order still pair with their partner
            if a.group:
                found.pair(a, groups.of[id(a)][1])
        only_a = [n for n in run_a if not n.group]
        only_b = [n for n in run_b if not n.group]
        for a, b in zip(only_a, only_b, strict=False):  # a run that differs: changed
            found.pair(a, b)
        for a in only_a[len(only_b) :]:
            found.alone(a, "a")
        for b in only_b[len(only_a) :]:
            found.alone(b, "b")


def _exactly(node: Node) -> Hashable:
    """What a layer is and what it does here: its kind, parameter and output shapes."""
    return (node.key, _shapes_of(node.params), node.row.output_shapes)


def _kind(node: Node) -> Hashable:
    return node.key


def _runs_of(
    left: list[Node], right: list[Node], keys: list[Callable[[Node], Hashable]]
) -> Iterator[tuple[bool, list[Node], list[Node]]]:
    """Two sequences aligned by the first key, and where a run differs by the next:
    runs that are the same (True) and runs that differ (False), in order."""
    key, *rest = keys
    matcher = difflib.SequenceMatcher(
        None, [key(n) for n in left], [key(n) for n in right], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            yield True, left[i1:i2], right[j1:j2]
        elif rest and i1 < i2 and j1 < j2:
            yield from _runs_of(left[i1:i2], right[j1:j2], rest)
        else:
            yield False, left[i1:i2], right[j1:j2]


def _leaf_partners(left: list[Node], right: list[Node]) -> dict[int, Node]:
    """Each leaf's partner in a first alignment of all the leaves under both lists, in
    order (both ways: a leaf's id → the other side's leaf)."""
    leaves_a = [leaf for n in left for leaf in n.leaves]
    leaves_b = [leaf for n in right for leaf in n.leaves]
    partners: dict[int, Node] = {}
    for _, run_a, run_b in _runs_of(leaves_a, leaves_b, [_exactly, _kind]):
        for a, b in zip(run_a, run_b, strict=False):
            partners[id(a)], partners[id(b)] = b, a
    return partners


class _Groups:
    """The containers of two sibling lists paired so far: each one's pair number (the
    same for both) and partner."""

    def __init__(self) -> None:
        self.of: dict[int, tuple[int, Node]] = {}

    def join(self, a: Node, b: Node) -> None:
        number = len(self.of) // 2
        self.of[id(a)], self.of[id(b)] = (number, b), (number, a)

    def free(self, nodes: list[Node]) -> list[Node]:
        return [n for n in nodes if n.group and id(n) not in self.of]

    def token(self, node: Node, key: Callable[[Node], Hashable]) -> Hashable:
        """What ``node`` is in an alignment: a paired container is its pair."""
        if id(node) in self.of:
            return ("pair", self.of[id(node)][0])
        return ("group",) if node.group else key(node)


def _pair_groups(
    left: list[Node], right: list[Node], partners: dict[int, Node]
) -> tuple[list[Node], list[Node], _Groups]:
    """Pair the containers of two sibling lists: those the sequences put in the same
    place when most of their layers are alike; then those with the same layers, wherever
    they are; then each with the container that holds the partners of most of its
    leaves, and mostly their partners. Containers without a partner are opened (their
    members take their place), on the side of the largest first (a smaller one of the
    other side may pair with what is inside), until every container left has one."""
    left, right = list(left), list(right)
    while True:
        groups = _Groups()
        _alike_in_place(left, right, groups)
        _same_layers(left, right, groups)
        _mutual_majorities(left, right, partners, groups)
        alone_a, alone_b = groups.free(left), groups.free(right)
        if not alone_a and not alone_b:
            return left, right, groups
        widest = max(len(n.leaves) for n in alone_a + alone_b)
        if any(len(n.leaves) == widest for n in alone_a):
            left = _opened(left, alone_a)
        else:
            right = _opened(right, alone_b)


def _opened(nodes: list[Node], opening: list[Node]) -> list[Node]:
    """``nodes`` with each of ``opening`` replaced by its members."""
    ids = {id(n) for n in opening}
    return [m for n in nodes for m in (n.members if id(n) in ids else [n])]


def _same_layers(left: list[Node], right: list[Node], groups: _Groups) -> None:
    """Pair containers whose layers are exactly alike, wherever they are (a shortcut run
    before or after the body)."""
    waiting: dict[Hashable, list[Node]] = {}
    for b in groups.free(right):
        waiting.setdefault(tuple(_exactly(n) for n in b.leaves), []).append(b)
    for a in groups.free(left):
        alike = waiting.get(tuple(_exactly(n) for n in a.leaves))
        if alike:
            groups.join(a, alike.pop(0))


def _mutual_majorities(
    left: list[Node], right: list[Node], partners: dict[int, Node], groups: _Groups
) -> None:
    where = {id(leaf): j for j, n in enumerate(right) for leaf in n.leaves}
    for a in groups.free(left):
        found = Counter(
            where[id(partners[id(leaf)])]
            for leaf in a.leaves
            if id(leaf) in partners and id(partners[id(leaf)]) in where
        )
        if not found:
            continue
        j, shared = found.most_common(1)[0]
        b = right[j]
        if b in groups.free([b]) and 2 * shared > len(a.leaves) and 2 * shared > len(b.leaves):
            groups.join(a, b)


def _alike_in_place(left: list[Node], right: list[Node], groups: _Groups) -> None:
    """Pair containers that the sequences put in the same place, when at least half
    their layers are alike (so a layer moved from one block to the next leaves both
    blocks paired)."""
    matcher = difflib.SequenceMatcher(
        None,
        [groups.token(n, _kind) for n in left],
        [groups.token(n, _kind) for n in right],
        autojunk=False,
    )
    for i, j, size in matcher.get_matching_blocks():
        for a, b in zip(left[i : i + size], right[j : j + size], strict=True):
            if groups.free([a]) and groups.free([b]) and _alike(a, b):
                groups.join(a, b)


def _alike(a: Node, b: Node) -> bool:
    """Do two containers hold the same kinds of layers in the same order, or are at least
    half their layers alike in kind and shapes?"""
    kinds_a, kinds_b = [n.key for n in a.leaves], [n.key for n in b.leaves]
    if kinds_a == kinds_b:
        return True
    keys_a, keys_b = [_exactly(n) for n in a.leaves], [_exactly(n) for n in b.leaves]
    return difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False).ratio() >= 0.5


# -- comparing -----------------------------------------------------------------------------


def diff(a: Report, b: Report) -> Diff:
    """Pair the units of ``a`` and ``b`` (see the module docstring) and say how they differ."""
    tree_a, tree_b = call_tree(a), call_tree(b)
    found = _Pairing()
    if tree_a is not None and tree_b is not None:
        found.paths[tree_a.row.path] = tree_b.row.path
        _align(_top(tree_a), _top(tree_b), found)
    elif tree_a is not None:
        found.alone(tree_a, "a")
    elif tree_b is not None:
        found.alone(tree_b, "b")
    changes = []
    for node_a, node_b in found.units:
        if node_a is not None and node_b is not None:
            changes.append(_compare(node_a, node_b, found.paths))
        elif node_a is not None:
            changes.append(_only(node_a.row, None, "removed", b))
        elif node_b is not None:
            changes.append(_only(None, node_b.row, "added", a))
    return Diff(a, b, tuple(changes))


def _top(tree: Node) -> list[Node]:
    """What a model's root holds (the root itself when the model is one layer)."""
    return tree.members or [tree]


def _only(a: Row | None, b: Row | None, status: Status, other: Report) -> Change:
    """A unit on one side only: unseen when it owns no parameters and the other side is
    a Python model, which cannot show such a layer (see the module docstring)."""
    row = a or b
    assert row is not None
    unseen = not row.params and is_python_model(other)
    return Change("unseen" if unseen else status, a, b)


def is_python_model(report: Report) -> bool:
    """Was ``report`` made from a Python model (directly or through its saved JSON)?"""
    from shapecli.pymodel import TARGET

    return bool(TARGET.fullmatch(report.spec))


def _compare(a: Node, b: Node, paths: dict[str, str]) -> Change:
    found: list[Difference] = []
    if a.row.output_shapes != b.row.output_shapes:
        text = f"output {_shapes(a.row.output_shapes)} → {_shapes(b.row.output_shapes)}"
        found.append(Difference("output", text))
    if a.kind is not None and b.kind is not None and a.kind != b.kind:
        found.append(Difference("type", f"type {a.row.type} → {b.row.type}"))
    elif a.kind is not None and b.kind is not None:
        found += _argument_changes(a.arguments, b.arguments)
    if a.rerun or b.rerun:
        found += _rerun_changes(a, b, paths)
    else:
        if _shapes_of(a.params) != _shapes_of(b.params):
            text = f"parameters {params_text(a.params)} → {params_text(b.params)}"
            found.append(Difference("parameters", text))
        found += _tie_changes(a.params, b.params, paths)
    return Change("changed" if found else "same", a.row, b.row, tuple(found))


def _argument_changes(
    a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]
) -> list[Difference]:
    """Each argument of one type's two layers that differs (a size ``2`` is ``(2, 2)``)."""
    left, right = dict(a), dict(b)
    found = []
    for name in [*left, *(n for n in right if n not in left)]:
        both = name in left and name in right
        if name in NOT_COMPARED or (both and _same_text(left[name], right[name])):
            continue
        was, now = (side.get(name, "(none)") for side in (left, right))
        found.append(Difference("arguments", f"{name} {was} → {now}"))
    return found


def _same_text(a: str, b: str) -> bool:
    """Do two arguments, as the report writes them, say the same value?"""
    try:
        return _same_value(ast.literal_eval(a), ast.literal_eval(b))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return a == b  # not a literal (a report written by hand): as written


def _same_value(a: object, b: object) -> bool:
    """Equal, where a size given once stands for every dimension (torch's ``2`` for
    ``(2, 2)``); ``True`` is not ``1``."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple) or isinstance(b, tuple):
        one, many = (b, a) if isinstance(a, tuple) else (a, b)
        assert isinstance(many, tuple)
        return bool(many) and all(_same_value(one, item) for item in many)
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _tie_changes(
    a: tuple[ParamInfo, ...], b: tuple[ParamInfo, ...], paths: dict[str, str]
) -> list[Difference]:
    """Each parameter tied to a module that does not pair with what B's is tied to (or
    tied on one side only)."""
    theirs = {p.name: p.shared_with for p in b}
    found = []
    for p in a:
        if p.name in theirs and _mapped(p.shared_with, paths) != theirs[p.name]:
            was = f"tied to {p.shared_with}" if p.shared_with else "its own"
            now = f"tied to {theirs[p.name]}" if theirs[p.name] else "its own"
            found.append(Difference("ties", f"{p.name}: {was} → {now}"))
    return found


def _rerun_changes(a: Node, b: Node, paths: dict[str, str]) -> list[Difference]:
    """A module run again on both sides: the same when it runs the paired module (its
    parameters are tied to the paired ones)."""
    runs_a = sorted(str(_mapped(p.shared_with, paths)) for p in a.params)
    runs_b = sorted(str(p.shared_with) for p in b.params)
    if a.rerun and b.rerun and runs_a == runs_b:
        return []
    return [Difference("ties", f"runs {_runs(a)} → {_runs(b)}")]


def _runs(node: Node) -> str:
    """What a unit runs: a module again (named by what its parameters are), or its own."""
    if not node.rerun:
        return "a module of its own"
    modules = sorted({(p.shared_with or "").rpartition(".")[0] for p in node.params} - {""})
    return "again " + (", ".join(modules) or node.row.path)


def _mapped(shared_with: str | None, paths: dict[str, str]) -> str | None:
    """A tie target in A (``wte.weight``) as B names the paired module's parameter."""
    if shared_with is None:
        return None
    module, _, name = shared_with.rpartition(".")
    if module not in paths:
        return shared_with
    return f"{paths[module]}.{name}" if paths[module] else name


def _shapes_of(params: tuple[ParamInfo, ...]) -> tuple[tuple[str, Shape | None], ...]:
    return tuple((p.name, p.shape) for p in params)


def _shapes(shapes: tuple[Shape, ...]) -> str:
    return format_shapes(shapes) or "nothing"


def params_text(params: tuple[ParamInfo, ...]) -> str:
    """``weight 256×20 · bias 256`` (``?`` for a size never known)."""
    parts = [f"{p.name} {format_shape(p.shape) if p.shape else '?'}" for p in params]
    return " · ".join(parts) or "none"
