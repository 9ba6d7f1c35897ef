"""What the spec parser must know about shapecli's own layers, without importing torch.

Parsing a spec needs two structural facts about a layer type: which of its arguments
hold *layers* (so their YAML is parsed as entries, not values), and what the short
forms ``Name: value`` and ``Name: [ ... ]`` mean. Everything else — argument names,
types, defaults — lives on the module classes in :mod:`shapecli.layers.own` and is
checked against their signatures at build time, like any ``torch.nn`` class.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """The parse-time shape of one of shapecli's own layers.

    ``layers``: arguments holding one layer list; ``branches``: arguments holding a
    list of layer lists; ``list_to``: the argument a bare ``Name: [ ... ]`` fills
    (``None``: the list is positional arguments); ``scalar_to`` likewise for
    ``Name: value`` (``None``: one positional argument); ``takes_input``: False for a
    layer that reads no tensor (``Param``), so by default it is given none; ``merge``:
    for a layer that holds layer lists, what it does with their outputs (its ``merge:``
    argument may say otherwise) — a Residual without a shortcut adds its own input.
    """

    layers: frozenset[str] = frozenset()
    branches: frozenset[str] = frozenset()
    list_to: str | None = None
    scalar_to: str | None = None
    takes_input: bool = True
    merge: str | None = None


OWN_LAYERS: dict[str, Shape] = {
    "Sequential": Shape(layers=frozenset({"layers"}), list_to="layers"),
    "Residual": Shape(layers=frozenset({"body", "shortcut"}), list_to="body", merge="add"),
    "Parallel": Shape(branches=frozenset({"branches"}), list_to="branches", merge="cat"),
    "Ref": Shape(scalar_to="target"),
    "Reshape": Shape(list_to="shape", scalar_to="shape"),
    "Permute": Shape(list_to="dims"),
    "Transpose": Shape(),
    "Take": Shape(),
    "Mean": Shape(list_to="dim"),
    "Select": Shape(),
    "ClassToken": Shape(),
    "PositionalEmbedding": Shape(),
    "Attention": Shape(),
    "Add": Shape(),
    "Mul": Shape(),
    "Cat": Shape(scalar_to="dim"),
    "Stack": Shape(scalar_to="dim"),
    "MatMul": Shape(),
    "Param": Shape(list_to="shape", takes_input=False),
    "ScaledDotProduct": Shape(),
    "PositionBuckets": Shape(),
    "Roll": Shape(),
    "WindowPartition": Shape(),
    "WindowMerge": Shape(),
    "RelativePositionBias": Shape(),
    "Slice": Shape(),
    "Split": Shape(list_to="size", scalar_to="size"),
    "Chunk": Shape(),
    "Gather": Shape(),
    "TopK": Shape(),
    "ArgMax": Shape(),
    "ArgSort": Shape(),
    "Noise": Shape(),
    "Expand": Shape(list_to="dims", scalar_to="dims"),
    "ReshapeAs": Shape(),
    "Scale": Shape(),
    "Exp": Shape(),
    "Sum": Shape(list_to="dim"),
    "Normalize": Shape(),
    "QuickGELU": Shape(),
    "Positions": Shape(),
    "Sinusoidal": Shape(),
    "Rotary": Shape(),
    "WeightNorm": Shape(layers=frozenset({"body"}), list_to="body"),
    "MoE": Shape(layers=frozenset({"experts"}), list_to="experts"),
}
