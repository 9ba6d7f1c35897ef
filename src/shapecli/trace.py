"""Where a Python model's tensors come from: its dataflow, traced during the dry run.

A spec says where each layer's input comes from, so its report's ``sources`` are known
before anything runs. A Python model says it only in the code of its ``forward`` —
``out = self.bn2(...); out += identity; return self.relu(out)`` — so the dry run
watches: every tensor carries the set of places it was made from, and every module call
records the places of the tensors it received.

* A model input is its own place (``Origin(input=name)``).
* A module's output comes from that module. When a container returns what its last
  layer returned, the tensor is the container's from then on: the layers inside it
  that read it have read it already, and a reader outside sees the container, as the
  next entry after a block does in a spec. (``graph`` draws the edge from what the
  container returns.)
* Anything else (``torch.flatten``, ``x + y``, an in-place ``out += identity``) makes a
  tensor from all the places of the tensors it was given. That is how a residual's add
  shows as two sources of the next layer: the block's last layer and its input.

Parameters and constants come from nowhere and add nothing. A module called twice (one
``self.relu`` after each convolution) makes two calls, each with its own sources. What
a module's ``forward`` computes after its last submodule (a squeeze-excitation's
``x * gate``) is the module's own output, made from what it returns: the places of the
tensors it returns, seen as it returns them.

:func:`traced_graph` writes the calls as the graph a spec compiles to
(:mod:`shapecli.ir`): one node per call, whose arguments are the calls (or model
inputs) its inputs were made from, inside the group of the call that made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.overrides import TorchFunctionMode

from shapecli.ir import Graph, Group, Node
from shapecli.record import tensors_in
from shapecli.report import Origin

if TYPE_CHECKING:
    from shapecli.record import Call

#: The places a tensor was made from, in the order first seen.
Places = tuple[Origin, ...]


def union(places: Iterable[Places]) -> Places:
    return tuple(dict.fromkeys(origin for group in places for origin in group))


class Dataflow(TorchFunctionMode):
    """Carries each tensor's places through every torch function (see the module
    docstring). Module calls are marked by the recorder, which asks :meth:`places` of
    what a call receives and :meth:`set` for what it returns (the module itself)."""

    def __init__(self) -> None:
        super().__init__()
        self._places: dict[int, Places] = {}
        self._alive: list[object] = []  # keeps the ids of known tensors unique

    def enter_inputs(self, tensors: Iterable[torch.Tensor], names: Iterable[str]) -> None:
        for tensor, name in zip(tensors, names, strict=False):
            self.set(tensor, (Origin(input=name),))

    def places(self, tensors: Iterable[torch.Tensor]) -> Places:
        return union(self._places.get(id(t), ()) for t in tensors)

    def set(self, tensor: torch.Tensor, places: Places) -> None:
        self._places[id(tensor)] = places
        self._alive.append(tensor)

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        made_from = self.places(tensors_in((args, kwargs)))
        if made_from:
            for tensor in tensors_in(result):
                self.set(tensor, made_from)
        return result


def traced_graph(calls: Sequence[Call], inputs: Sequence[str]) -> Graph:
    """The graph of a traced pass: ``calls`` in the order they began (a call's
    producers began before it), ``inputs`` the model inputs' names."""
    top = Group("", "model")
    given = {name: top.placeholder(name) for name in inputs}
    graph = Graph(top)
    nodes: dict[tuple[str, int], Node] = {}
    groups: dict[int, Group] = {}  # id of a call → the group of the calls it made

    def node_of(origin: Origin) -> Node | None:
        if origin.path is not None:
            return nodes.get((origin.path, origin.call))
        return given.get(origin.input or "")

    def group_of(call: Call | None) -> Group:
        if call is None:
            return top
        if id(call) not in groups:
            caller = nodes[(call.path, call.index)]
            caller.inner = groups[id(call)] = Group(call.path, "module", caller.group, caller)
        return groups[id(call)]

    for call in calls:
        args = tuple(n for n in map(node_of, call.places) if n is not None)
        name = call.path.rsplit(".", 1)[-1]
        node = group_of(call.parent).add(Node("call", call.path, name, args, call=call.index))
        nodes[(call.path, call.index)] = node
        graph.calls.setdefault(call.path, node)
    for call in calls:
        group = groups.get(id(call))
        if group is not None and call.done:
            returned = tuple(n for n in map(node_of, call.returned_places) if n is not None)
            group.output = Node("output", call.path, args=returned, group=group)
    return graph
