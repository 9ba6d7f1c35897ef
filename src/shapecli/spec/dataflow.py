"""Named tensors (format 2): which tensors an entry can read, resolved as the spec is
parsed, so every mistake is found before torch is imported.

Each layer list has a :class:`ListNames`: its inputs (the model's named inputs, a
block's ``inputs:``, or one unnamed input ``#0`` for a nested list), the entries
defined so far, the entries ``if:`` dropped, and the names still to come (so "used
before it is defined" can be told from "never defined"). A nested list can also read
the names of the lists around it, as they are at its position; a block's body cannot:
a block is a function of its inputs.

An entry's ``in:`` becomes a :class:`~shapecli.spec.model.Wiring` of
:class:`~shapecli.spec.model.TensorRef`\\ s that say where each name lives (this list,
or one ``up``), which is all the built module needs at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from shapecli.errors import Source, did_you_mean, fail
from shapecli.spec.model import TensorRef

PREVIOUS = "_"


def is_implicit(name: str) -> bool:
    """``#0``…: the unnamed inputs of a nested list or a version-1 model."""
    return name.startswith("#")


@dataclass
class ListNames:
    """The tensors the entries of one layer list can read, as the list is parsed."""

    inputs: tuple[str, ...]
    parent: ListNames | None = None
    later: dict[str, Source] = field(default_factory=dict)  # named entries not yet reached
    defined: dict[str, Source] = field(default_factory=dict)
    dropped: dict[str, Source] = field(default_factory=dict)  # name → its `if:`
    read: set[str] = field(default_factory=set)  # inputs something read
    previous: str | None = None  # the last entry kept so far

    def define(self, name: str, source: Source) -> None:
        self.later.pop(name, None)
        if name in self.inputs:
            raise fail(
                "spec-invalid",
                f"`{name}` is defined twice: it is an input of this list and the name of this "
                "entry; rename the entry",
                source,
            )
        self.defined[name] = source
        self.previous = name

    def drop(self, name: str, condition: Source) -> None:
        self.later.pop(name, None)
        self.dropped[name] = condition

    def resolve(self, name: str, source: Source) -> TensorRef:
        """Where ``name`` lives, seen from the current position in this list."""
        if name == PREVIOUS:
            return self.previous_ref(source)
        for up, frame in enumerate(self._frames()):
            if name in frame.defined or name in frame.inputs:
                if name in frame.inputs:
                    frame.read.add(name)
                return TensorRef(name, up, source)
        for frame in self._frames():
            if name in frame.dropped:
                line = frame.dropped[name].line
                raise fail(
                    "spec-invalid",
                    f"`{name}` is dropped by its `if:` (line {line}), so nothing can read it "
                    "here; give this entry the same `if:`, or read another tensor",
                    source,
                )
            if name in frame.later:
                raise fail(
                    "spec-invalid",
                    f"`{name}` is used before it is defined (at line {frame.later[name].line}); "
                    "an entry reads only the model inputs and entries above it",
                    source,
                )
        visible = self.visible()
        suggestion = did_you_mean(name, visible)
        listed = ", ".join(f"`{v}`" for v in visible) or "none"
        raise fail(
            "spec-invalid",
            f"no tensor named `{name}` here{suggestion}; this entry can read: {listed}",
            source,
        )

    def previous_ref(self, source: Source) -> TensorRef:
        """``_``: the previous entry's output; for the first entry, the list's input."""
        if self.previous is not None:
            return TensorRef(self.previous, 0, source)
        if not self.inputs:
            raise fail("spec-invalid", "`_` has nothing to read: this list has no input", source)
        self.read.add(self.inputs[0])
        return TensorRef(self.inputs[0], 0, source)

    def visible(self) -> list[str]:
        names: list[str] = []
        for frame in self._frames():
            names += [n for n in (*frame.inputs, *frame.defined) if not is_implicit(n)]
        return list(dict.fromkeys(names))

    def _frames(self) -> Iterator[ListNames]:
        """This list, then each list around it, outwards."""
        frame: ListNames | None = self
        while frame is not None:
            yield frame
            frame = frame.parent
