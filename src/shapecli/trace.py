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
``self.relu`` after each convolution) has one row, whose sources are those of all its
calls, in order. What a module's ``forward`` computes after its last submodule (a
squeeze-excitation's ``x * gate``) is the module's own output: the tensors that went
into it are its inputs, not edges drawn past it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from shapecli.record import tensors_in
from shapecli.report import Origin

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
