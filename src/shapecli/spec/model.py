"""The Spec: what a YAML file means, as plain dataclasses with source locations.

By the time a :class:`Spec` exists, every ``${…}`` has been evaluated, every block use
expanded into its own :class:`Entry` tree and every structural rule checked. The build
step sees only concrete entries: type names, arguments and children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, TypeAlias

from shapecli.errors import Source
from shapecli.inputs import InputSpec


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
    repeat: int = 1
    tie: dict[str, str] = field(default_factory=dict)
    tie_sources: dict[str, Source] = field(default_factory=dict)
    trainable: bool = True
    block: str | None = None

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
    """A parsed, resolved spec file."""

    name: str
    file: str
    model: Entry
    inputs: tuple[InputSpec, ...] = ()
    input_source: Source | None = None
    description: str | None = None
    params: dict[str, int | float | bool | str | None] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    version: int = 1
    module_count: int = 0
