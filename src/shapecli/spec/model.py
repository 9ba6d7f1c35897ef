"""The Spec: what a YAML file means, as plain dataclasses with source locations.

By the time a :class:`Spec` exists, every ``${…}`` has been evaluated, every block use
expanded into its own :class:`Entry` tree and every structural rule checked. The build
step sees only concrete entries: type names, arguments and children.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias, TypeVar

from shapecli.errors import Problem, Source
from shapecli.inputs import InputSpec

T = TypeVar("T")


class Auto:
    """The ``auto`` marker: "fill this input size from the first input"."""

    _instance: Auto | None = None

    def __new__(cls) -> Auto:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "auto"


AUTO: Final = Auto()

#: Weight initializations a spec (``init:``) and ``build`` may name. ``default`` is each
#: layer's own ``reset_parameters``; the others are ``torch.nn.init`` schemes (``normal``
#: with std 0.02, GPT-2's) for every weight of two or more dimensions.
INIT_SCHEMES: Final = (
    "default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "normal",
)


#: The options an entry may have beside its layer type (``- Layer: …``, then ``name:``,
#: ``in:`` … in the same column): the parser's keys, the argument checker's "indented
#: one level too deep" and the schema all read this one tuple.
ENTRY_OPTIONS: Final = ("name", "repeat", "tie", "trainable", "in", "if", "init")


@dataclass(frozen=True)
class TensorRef:
    """A tensor an entry reads: a name resolved where it is written.

    ``name`` is an input of a layer list (``#0``, ``#1``… for the unnamed input of a
    nested list or a version-1 model) or the name of an entry; ``up`` says in which list:
    0 this one, 1 the list that encloses it, and so on.
    """

    name: str
    up: int = 0
    source: Source | None = None


@dataclass(frozen=True)
class Wiring:
    """An entry's ``in:``: the tensors passed positionally and by keyword."""

    args: tuple[TensorRef, ...] = ()
    kwargs: dict[str, TensorRef] = field(default_factory=dict)

    def refs(self) -> tuple[TensorRef, ...]:
        return (*self.args, *self.kwargs.values())


#: An argument value after resolution: YAML scalars, tuples (from YAML lists), the
#: ``auto`` marker, nested entries (for layers that take layers) and string-keyed dicts.
ArgValue: TypeAlias = (
    "int | float | bool | str | Auto | Entry | tuple[ArgValue, ...] | dict[str, ArgValue] | None"
)


@dataclass(frozen=True)
class Entry:
    """One layer of the model as the spec describes it.

    ``type`` is a name still to be resolved (shapecli's own layers and ``torch.nn``
    classes), or ``Sequential`` for a list. ``block`` is set when this entry is the
    expansion of a block use (its ``source`` is the use; the body's entries point at the
    lines of the body). Uses of a block with the same params share one expanded body:
    the tree of entries is a DAG, and each *module* built from it is still fresh.
    """

    type: str
    name: str
    source: Source
    args: tuple[ArgValue, ...] = ()
    kwargs: dict[str, ArgValue] = field(default_factory=dict)
    arg_sources: dict[str, Source] = field(default_factory=dict)
    #: ``repeat: N`` — None: a single layer; N (1 or more): a group of N copies, at
    #: ``name.0`` … ``name.N-1`` (so paths do not move when a param makes N one).
    repeat: int | None = None
    tie: dict[str, str] = field(default_factory=dict)
    tie_sources: dict[str, Source] = field(default_factory=dict)
    trainable: bool = True
    block: str | None = None
    #: ``in:`` — where the inputs come from; None: the previous entry's output (the
    #: first entry of a list: the list's inputs).
    wiring: Wiring | None = None
    #: For a layer list: the names of its inputs, the tensors it returns (None: the last
    #: entry's output), and whether its entries may read the enclosing lists' names
    #: (a block's body may not: a block is a function of its inputs).
    inputs: tuple[str, ...] = ("#0",)
    output: tuple[TensorRef, ...] | None = None
    closed: bool = False
    #: ``init:`` — the scheme for the weights of this entry (and everything in it) when
    #: real weights are made; None: the enclosing entry's, or the spec's.
    init: str | None = None

    @property
    def display_type(self) -> str:
        """The type as the user wrote it: the block name for a block use."""
        return self.block or self.type

    def children(self) -> list[tuple[str, Entry]]:
        """Entries nested in this one's arguments, each with the argument that holds it."""
        found: list[tuple[str, Entry]] = []

        def walk(where: str, value: ArgValue) -> None:
            if isinstance(value, Entry):
                found.append((where, value))
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    walk(f"{where}.{i}", item)

        for i, arg in enumerate(self.args):
            walk(str(i), arg)
        for key, arg in self.kwargs.items():
            walk(key, arg)
        return found


@dataclass(frozen=True)
class Spec:
    """A parsed, resolved spec file. ``warnings`` are problems that do not stop it
    (a model input nothing reads)."""

    name: str
    file: str
    model: Entry
    inputs: tuple[InputSpec, ...] = ()
    input_source: Source | None = None
    description: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    version: int = 2
    module_count: int = 0
    warnings: tuple[Problem, ...] = ()
    blocks: tuple[str, ...] = ()  # the names of the spec's blocks (for "did you mean")
    init: str | None = None  # the top-level ``init:``; None: not given


def at_or_above(path: str, found: Mapping[str, T]) -> T | None:
    """What ``found`` holds for the module at ``path`` or, failing that, for the nearest
    module around it: torch's own submodules of a layer are blamed on its entry."""
    while path not in found and path:
        path = path.rpartition(".")[0]
    return found.get(path)
