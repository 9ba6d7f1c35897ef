"""The dataflow graph: which tensor every call reads, compiled once from a spec.

torch.fx is the model. A :class:`Graph` is a tree of :class:`Group`\\ s, each an
ordered list of :class:`Node`\\ s whose arguments are other nodes:

* ``input`` — a placeholder: one of a group's inputs (``name``), or every input it is
  given (``*``: a version-1 list, which takes whatever it is passed);
* ``call`` — one module call at a module path (an entry of the spec); the call of a
  container (a layer list, a ``repeat`` group, a ``Residual``…) runs the group it
  holds (``inner``);
* ``merge`` — what a layer that holds layer lists does with their outputs: a
  ``Residual`` adds (``+``), a ``Parallel`` concatenates, adds, stacks…;
* ``output`` — what a group returns (``args``), explicitly: nothing about a group's
  output is ever inferred from shapes.

An argument may be a node of an enclosing group (a nested list reads the names around
it), never of a sibling's inside. Every mode reads the same graph: the modules run it
(each layer list through its :class:`Program`, compiled from its group), the report's
``sources`` and ``returns`` are its edges (:func:`origins`), and pictures and ``diff``
draw and align what the report carries.

A Python model has no spec: the dry run traces the same graph from its calls
(:func:`shapecli.trace.traced_graph`). Nothing here imports torch: a spec's graph
exists before any module does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from shapecli.layers.catalog import OWN_LAYERS
from shapecli.report import Merge, Origin
from shapecli.spec.model import ArgValue, Entry, Spec, TensorRef

Op = Literal["input", "call", "merge", "output"]
GroupKind = Literal["model", "list", "repeat", "layer", "module"]

#: The name of the placeholder that stands for every input a version-1 list is given.
EVERY_INPUT = "*"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass(eq=False)
class Node:
    """One step of a group (see the module docstring for the four kinds)."""

    op: Op
    path: str  # call: the module's path; the others: their group's
    name: str = ""  # call: the entry's name; input: the input's; merge: how it merges
    args: tuple[Node, ...] = ()
    kwargs: dict[str, Node] = field(default_factory=dict)
    group: Group | None = None
    inner: Group | None = None  # a container's call: the group it runs
    call: int = 0  # which call of the module (a traced module may be called again)

    def __repr__(self) -> str:
        return f"Node({self.op} {self.path or '<root>'} {self.name})"

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (*self.args, *self.kwargs.values())


@dataclass(eq=False)
class Group:
    """The nodes a container runs, its placeholders and what it returns.

    ``list``: a layer list (the model, a nested list, a block's body), run by its
    :class:`Program`; ``repeat``: the copies of ``repeat: N``, each reading the one
    before; ``layer``: a layer that holds layer lists (``Residual``, ``Parallel``), run
    by its own ``forward`` and described here by its lists' calls and a merge node;
    ``model``: the top, whose inputs are the model's and whose one node calls the model;
    ``module``: the calls a Python module's ``forward`` made, as traced.
    """

    path: str
    kind: GroupKind
    parent: Group | None = None
    caller: Node | None = None
    inputs: list[Node] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    output: Node | None = None
    #: A nested list reads this list's names: the list keeps them while it runs.
    read_inside: bool = False

    def __repr__(self) -> str:
        return f"Group({self.kind} {self.path or '<root>'})"

    def add(self, node: Node) -> Node:
        node.group = self
        self.nodes.append(node)
        return node

    def placeholder(self, name: str) -> Node:
        node = Node("input", self.path, name, group=self)
        self.inputs.append(node)
        return node

    def returns(self) -> tuple[Node, ...]:
        """The nodes whose values this group returns."""
        return self.output.args if self.output is not None else ()


@dataclass
class Graph:
    """A model's dataflow: the root group and every call and group by path."""

    root: Group
    calls: dict[str, Node] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def nodes(self) -> Iterator[Node]:
        """Every node, groups entered where they are called (the order calls are made)."""

        def walk(group: Group) -> Iterator[Node]:
            yield from group.inputs
            for node in group.nodes:
                yield node
                if node.inner is not None:
                    yield from walk(node.inner)
            if group.output is not None:
                yield group.output

        yield from walk(self.root)


# -- compiling a spec ---------------------------------------------------------------------


@dataclass
class _Scope:
    """The names entries of one layer list can read: its inputs and members so far; a
    list that is not closed (not a block's body) also sees the list around it."""

    group: Group
    names: dict[str, Node]
    parent: _Scope | None


def compile_spec(spec: Spec) -> Graph:
    """The spec's graph. Every name was resolved by the parser (a ``TensorRef`` says in
    which list it lives), so compiling cannot fail. The top group is the model as a
    function: its inputs, and one call of the module at ``""``."""
    compiler = _Compiler()
    top = Group("", "model")
    named = tuple(i.name for i in spec.inputs if i.name is not None)
    given = tuple(top.placeholder(n) for n in named or (EVERY_INPUT,))
    model = compiler.call(spec.model, "", top, given, {}, None)
    top.output = Node("output", "", args=(model,), group=top)
    return Graph(top, compiler.calls, compiler.groups)


class _Compiler:
    def __init__(self) -> None:
        self.calls: dict[str, Node] = {}
        self.groups: dict[str, Group] = {}

    def call(
        self,
        entry: Entry,
        path: str,
        group: Group,
        args: tuple[Node, ...],
        kwargs: dict[str, Node],
        scope: _Scope | None,
    ) -> Node:
        """The call of ``entry`` at ``path``, with the group it runs if it is a container."""
        node = group.add(Node("call", path, entry.name, args, kwargs))
        self.calls[path] = node
        if entry.repeat is not None:
            node.inner = self._repeat(entry, path, node, scope)
        elif entry.type == "Sequential":
            node.inner = self._list(entry, path, node, scope)
        else:
            node.inner = self._held_lists(entry, path, node, scope)
        return node

    def _group(self, path: str, kind: GroupKind, caller: Node) -> Group:
        group = Group(path, kind, caller.group, caller)
        self.groups[path] = group
        return group

    def _list(self, entry: Entry, path: str, caller: Node, around: _Scope | None) -> Group:
        """A layer list's members: each reads what its ``in:`` names, or the previous
        member's output (the first: every input of the list)."""
        group = self._group(path, "list", caller)
        outer = None if entry.closed else around  # a block's body reads only its inputs
        inputs = entry.inputs
        if inputs == ("#0",):  # any number, unnamed: ``_`` reads the first (``#0``)
            scope = _Scope(group, {EVERY_INPUT: group.placeholder(EVERY_INPUT)}, outer)
            scope.names["#0"] = Node("input", group.path, "#0", group=group)
        else:
            scope = _Scope(group, {n: group.placeholder(n) for n in inputs}, outer)
        previous = tuple(group.inputs)
        layers = entry.kwargs.get("layers", entry.args)
        for child in layers if isinstance(layers, tuple) else ():
            assert isinstance(child, Entry)
            wiring = child.wiring
            if wiring is None:
                args, kwargs = previous, {}
            else:
                args = tuple(self._read(ref, scope) for ref in wiring.args)
                kwargs = {key: self._read(ref, scope) for key, ref in wiring.kwargs.items()}
            node = self.call(child, join(group.path, child.name), group, args, kwargs, scope)
            scope.names[child.name] = node
            previous = (node,)
        if entry.output is not None:
            returned = tuple(self._read(ref, scope) for ref in entry.output)
        else:
            returned = previous
        group.output = Node("output", group.path, args=returned, group=group)
        return group

    def _read(self, ref: TensorRef, scope: _Scope) -> Node:
        owner: _Scope | None = scope
        for _ in range(ref.up):
            assert owner is not None
            owner = owner.parent
        assert owner is not None, f"`{ref.name}` resolves outside the model"
        if ref.up:
            owner.group.read_inside = True
        return owner.names[ref.name]

    def _repeat(self, entry: Entry, path: str, caller: Node, scope: _Scope | None) -> Group:
        """``repeat: N``: copy *i* reads copy *i - 1*'s output and the further inputs."""
        group = self._group(path, "repeat", caller)
        given = [group.placeholder(f"#{i}") for i in range(len(caller.inputs))] or [
            group.placeholder(EVERY_INPUT)
        ]
        feed: tuple[Node, ...] = tuple(given)
        node = None
        for i in range(entry.repeat or 0):
            copy = replace(entry, repeat=None, name=str(i), wiring=None)
            node = self.call(copy, join(path, str(i)), group, feed, {}, scope)
            feed = (node, *given[1:])
        group.output = Node("output", path, args=(node,) if node else feed[:1], group=group)
        return group

    def _held_lists(
        self, entry: Entry, path: str, caller: Node, scope: _Scope | None
    ) -> Group | None:
        """A layer holding layer lists (a Residual's body and shortcut, a Parallel's
        branches): each list reads the layer's input; a merge node says what the layer
        makes of their outputs."""
        shape = OWN_LAYERS.get(entry.type)
        if shape is None or shape.merge is None:
            return None
        group = self._group(path, "layer", caller)
        x = group.placeholder("x")
        outputs: list[Node] = []
        for name in (*sorted(shape.layers), *sorted(shape.branches)):
            value = entry.kwargs.get(name)
            if not isinstance(value, tuple):
                continue
            where = entry.arg_sources.get(name, entry.source)
            lists = value if name in shape.branches else (value,)
            for i, layers in enumerate(lists):
                at = join(path, f"{name}.{i}" if name in shape.branches else name)
                held = Entry("Sequential", at.rsplit(".", 1)[-1], where, args=_entries(layers))
                outputs.append(self.call(held, at, group, (x,), {}, scope))
        if shape.merge == "add" and len(outputs) == 1:
            outputs.append(x)  # a Residual without a shortcut adds its own input
        how = entry.kwargs.get("merge", shape.merge)
        merge = group.add(Node("merge", path, str(how), tuple(outputs)))
        group.output = Node("output", path, args=(merge,), group=group)
        return group


def _entries(value: ArgValue) -> tuple[ArgValue, ...]:
    return value if isinstance(value, tuple) else ()


# -- what a layer list runs ---------------------------------------------------------------

#: Where a value is read from: (how many lists out, the name there).
Slot = tuple[int, str]


@dataclass(frozen=True)
class Step:
    """One member of a layer list: the module ``name``, called on the values at
    ``args`` and ``kwargs`` (None: the previous member's output; for the first, every
    input of the list)."""

    name: str
    args: tuple[Slot, ...] | None = None
    kwargs: tuple[tuple[str, Slot], ...] = ()


@dataclass(frozen=True)
class Program:
    """A layer list as its module runs it. ``inputs`` None: it takes any number,
    unnamed (a version-1 list); ``output`` None: it returns its last member's output;
    ``keep``: a nested list reads these names, so they are kept while the list runs."""

    inputs: tuple[str, ...] | None = None
    steps: tuple[Step, ...] = ()
    output: tuple[Slot, ...] | None = None
    keep: bool = False

    @property
    def plain(self) -> bool:
        """A chain: each member reads the one before (every version-1 list)."""
        return (
            not self.keep
            and self.output is None
            and all(s.args is None and not s.kwargs for s in self.steps)
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Program:
        return self  # immutable: copies of a module share it


def program_of(group: Group) -> Program:
    """What the module of a ``list`` group runs (a ``repeat`` group's module, a
    :class:`~shapecli.layers.own.Repeat`, calls each copy on the one before)."""
    named = [n.name for n in group.inputs]
    inputs = None if named in ([], [EVERY_INPUT]) else tuple(named)
    previous: tuple[Node, ...] = tuple(group.inputs)
    steps: list[Step] = []
    for node in group.nodes:
        if node.args == previous and not node.kwargs:
            steps.append(Step(node.name))
        else:
            args = tuple(_slot(a, group) for a in node.args)
            kwargs = tuple((k, _slot(v, group)) for k, v in node.kwargs.items())
            steps.append(Step(node.name, args, kwargs))
        previous = (node,)
    returned = group.returns()
    output = None if returned == previous else tuple(_slot(a, group) for a in returned)
    return Program(inputs, tuple(steps), output, keep=group.read_inside)


def _slot(node: Node, group: Group) -> Slot:
    """Where ``node``'s value lives, seen from ``group``: how many layer lists out (a
    Residual's lists read the list the Residual is in), and its name there."""
    up = 0
    here: Group | None = group
    while here is not None and node.group is not here:
        here = enclosing_list(here)
        up += 1
    assert here is not None, f"{node} is not visible from {group}"
    return (up, node.name)


def enclosing_list(group: Group) -> Group | None:
    """The layer list around ``group`` (a ``repeat`` or ``layer`` group is not one)."""
    here = group.parent
    while here is not None and here.kind != "list":
        here = here.parent
    return here


# -- edges, as the report writes them -------------------------------------------------------


def origins(node: Node) -> tuple[Origin, ...]:
    """Where ``node``'s value comes from, as the report says it: the path of the call
    that made it, or the model input's name. A placeholder is what its group's call
    was given (every input, for ``*``)."""
    if node.op != "input":
        return (Origin(path=node.path, call=node.call),)
    group = node.group
    assert group is not None
    caller = group.caller
    if caller is None:  # the model's own inputs
        return (Origin(input=node.name),)
    if node.name == EVERY_INPUT:
        return sources_of(caller)
    if node in group.inputs:
        index = group.inputs.index(node)
        return origins(caller.inputs[index]) if index < len(caller.inputs) else ()
    position = int(node.name[1:])  # ``#k``: the k-th tensor the list's call was given
    given = _positions(caller)
    return given[position] if position < len(given) else ()


def _positions(call: Node) -> list[tuple[Origin, ...]]:
    """The origins of each tensor a call is given positionally, in order (``*`` is
    every tensor its own group's call was given)."""
    found: list[tuple[Origin, ...]] = []
    for arg in call.args:
        group = arg.group
        if arg.op == "input" and arg.name == EVERY_INPUT and group is not None:
            found += _positions(group.caller) if group.caller else [origins(arg)]
        else:
            found.append(origins(arg))
    return found


def given_count(node: Node) -> int:
    """How many tensors a call receives positionally (``*``: all its group was given)."""
    return len(_positions(node))


def sources_of(node: Node) -> tuple[Origin, ...]:
    """Where each of ``node``'s inputs comes from, in order; a keyword input's origins
    carry its keyword."""
    found: list[Origin] = []
    for arg in node.args:
        found += origins(arg)
    for key, arg in node.kwargs.items():
        found += [replace(o, arg=key) for o in origins(arg)]
    return tuple(found)


def returns_of(node: Node) -> tuple[Merge | None, tuple[Origin, ...]]:
    """What a container's call returns: how its layer merges (``add``, ``cat``…; None
    for a list, which returns values as they are), and the origins of what it merges or
    returns. A leaf returns what it computes: ``(None, ())``."""
    if node.inner is None:
        return None, ()
    returned = node.inner.returns()
    if len(returned) == 1 and returned[0].op == "merge":
        merge = returned[0]
        found = [o for arg in merge.args for o in origins(arg)]
        return cast(Merge, merge.name), tuple(found)
    return None, tuple(o for arg in returned for o in origins(arg))
