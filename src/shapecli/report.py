"""The Report: everything a dry run learned, as plain data.

The dry run fills these dataclasses; renderers are pure functions of them. Nothing
here imports torch, so renderers and their tests run without it. :func:`to_json`
is the stable machine-readable form (``schema_version`` 1, documented in docs/json.md)
and :func:`from_json` its exact inverse: both are :mod:`shapecli.codec` reading the
type hints below, so a field added here is written, read back, checked and published
in :func:`report_schema` with nothing else to change. A field added to a published
type is marked :class:`~shapecli.codec.Added`, so reports saved before it still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from shapecli.codec import Added, DecodeError, Key, OneOf, Range, Via, depth, loads, shown
from shapecli.codec import decode as _decode
from shapecli.codec import encode as _encode
from shapecli.codec import schema as _schema
from shapecli.errors import Problem, Source
from shapecli.inputs import DTYPES, InputSpec, input_names

SCHEMA_VERSION = 1

#: A number of things (parameters, bytes, FLOPs): never negative.
Count = Annotated[int, Range(0)]
#: A size: a number, a formula over symbolic sizes, or None for one not derived.
Dim = Annotated[int, Range(0)] | str | None
Shape = tuple[Dim, ...]
RowStatus = Literal["ok", "failed", "not-run"]
#: How a container combines what it returns (a Residual adds; a Parallel's ``merge:``).
Merge = Literal["cat", "add", "mul", "stack", "tuple"]


def format_shape(dims: Shape | tuple[int, ...]) -> str:
    """``2×20``; a scalar tensor is ``()``; a formula is parenthesized when it is more
    than a name: ``B×16×((H - 1)//2 + 1)``; a size not derived is ``?``. One spelling
    for messages and tables."""
    if not dims:
        return "()"
    return "×".join(
        "?" if d is None else str(d) if isinstance(d, int) or d.isidentifier() else f"({d})"
        for d in dims
    )


def format_shapes(shapes: tuple[Shape, ...]) -> str:
    """Several shapes as one cell: ``2×20, 2×4`` (empty for none)."""
    return ", ".join(format_shape(s) for s in shapes)


@dataclass(frozen=True)
class Origin:
    """Where one input of a row came from: the output of the row at ``path`` (its
    ``call``-th call: a module may be called more than once), or the model input called
    ``input``; ``arg`` names the keyword it was passed as."""

    path: str | None = None
    input: str | None = None
    arg: str | None = None
    call: Annotated[Count, Added()] = 0


@dataclass(frozen=True)
class ParamInfo:
    """One parameter a module owns directly.

    ``shape`` and ``count`` are ``None`` while a lazy parameter is uninitialized (its
    layer never ran). A parameter registered in several places is counted at its first
    place only; the others carry ``shared_with`` (its first place's path) and count 0.
    """

    name: str
    shape: Shape | None
    count: Count | None
    trainable: bool = True
    shared_with: str | None = None


def _pairs(items: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(items.items())


@dataclass(frozen=True)
class Row:
    """One module of the tree. ``entry`` rows are what the spec wrote; the others are
    torch's own submodules (shown in the table only with ``--depth``)."""

    path: str
    name: str
    type: str
    depth: Count
    source: Source | None = None
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    params: tuple[ParamInfo, ...] = ()
    param_count: Count = 0
    flops: Count | None = None
    entry: bool = True
    inferred: bool = False
    status: RowStatus = "ok"
    same_as: str | None = None  # a repeat copy that took and gave what copy 0 did
    repeat: Count | None = None  # for a repeat group: how many copies
    sources: tuple[Origin, ...] = ()  # where each input came from
    #: Which call of the module this row is (0: its first; a module called twice has
    #: two rows).
    call: Annotated[Count, Added()] = 0
    #: A container's output: what it returns (the rows inside it, or its own inputs),
    #: combined by ``merge`` (``add``, ``cat``… for a Residual or Parallel; None: as is).
    returns: Annotated[tuple[Origin, ...], Added()] = ()
    merge: Annotated[Merge | None, Added()] = None
    #: The constructor arguments the module holds (``kernel_size``, ``stride``,
    #: ``dilation`` …), each written as Python writes the value (``(3, 3)``, ``1e-05``,
    #: ``'zeros'``). Read from the built module whatever made it, so a spec and the
    #: Python model it copies say them alike: what two layers of one type differ in
    #: where shapes cannot tell (``diff`` compares them). JSON: an object of texts.
    arguments: Annotated[
        tuple[tuple[str, str], ...], Via(dict[str, str], dict, _pairs), Added()
    ] = ()

    @property
    def label(self) -> str:
        """The row's name as tables and pictures show it: a later call says which
        (``act (call 2)``)."""
        return f"{self.name} (call {self.call + 1})" if self.call else self.name


@dataclass(frozen=True)
class MemoryFigures:
    """Estimated bytes (see :mod:`shapecli.memory` for how each is counted). The
    training figures are None unless the training estimate was asked for."""

    params: Count = 0
    buffers: Count = 0
    forward_activations: Count = 0
    gradients: Count | None = None
    optimizer: str | None = None
    optimizer_state: Count | None = None
    saved_for_backward: Count | None = None

    DERIVED: ClassVar[tuple[str, ...]] = ("training_peak",)

    @property
    def training_peak(self) -> int | None:
        parts = (self.gradients, self.optimizer_state, self.saved_for_backward)
        if any(p is None for p in parts):
            return None
        return self.params + self.buffers + sum(p or 0 for p in parts)


@dataclass(frozen=True)
class PerDevice(MemoryFigures):
    """The same figures on each device of a sharded training run: ``shard`` says how
    the model states are divided (``fsdp=8``, ``zero2=8``; see
    :mod:`shapecli.analyses.sharding`)."""

    shard: str = ""


@dataclass(frozen=True)
class Memory(MemoryFigures):
    """The whole model's figures, and with ``--shard`` each device's."""

    per_device: Annotated[PerDevice | None, Added()] = None


@dataclass(frozen=True)
class Totals:
    params: Count = 0
    trainable: Count = 0
    non_trainable: Count = 0
    shared: Count = 0
    param_bytes: Count = 0
    activation_bytes: Count | None = 0  # None when sizes are symbolic
    flops: Count | None = None
    param_dtype: str = "float32"
    complete: bool = True  # False when some lazy parameters never got a size
    memory: Memory | None = None


@dataclass(frozen=True)
class InputForm:
    """An input as the JSON report writes it: ``name`` is what the model calls it — the
    spec's name, or ``input`` / ``input0``… — and ``named`` says which of the two."""

    name: str
    shape: tuple[Annotated[int, Range(1)] | str, ...]
    dtype: Annotated[str, OneOf(dict.fromkeys(DTYPES.values()))]
    #: None: a report saved before this key existed (then a name like ``input0`` is
    #: taken to be shapecli's, not the spec's)
    named: Annotated[bool | None, Added()] = None


def _forms(inputs: tuple[InputSpec, ...]) -> tuple[InputForm, ...]:
    display = input_names(tuple(InputSpec(i.dims) for i in inputs))  # shapecli's names
    return tuple(
        InputForm(name if i.name is None else i.name, i.dims, i.dtype, i.name is not None)
        for name, i in zip(display, inputs, strict=True)
    )


def _inputs(forms: tuple[InputForm, ...]) -> tuple[InputSpec, ...]:
    display = input_names(tuple(InputSpec(f.shape) for f in forms))
    return tuple(
        InputSpec(
            f.shape, f.dtype, f.name if f.named or (f.named is None and f.name != d) else None
        )
        for f, d in zip(forms, display, strict=True)
    )


@dataclass(frozen=True)
class Report:
    name: str
    spec: str
    inputs: Annotated[tuple[InputSpec, ...], Via(tuple[InputForm, ...], _forms, _inputs)]
    rows: Annotated[tuple[Row, ...], Key("layers")] = ()
    totals: Totals = field(default_factory=Totals)
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    device: str = "meta"
    ran: Annotated[bool, Added()] = True  # False when there was no input to dry-run with
    #: Symbolic sizes: their names, the sizes accepted (``H >= 4``; None when not
    #: derived), and the sample sizes of the first run.
    symbols: tuple[str, ...] = ()
    constraints: tuple[str, ...] | None = ()
    samples: Annotated[
        tuple[tuple[str, Count], ...], Via(dict[str, Count], dict, _pairs), Added()
    ] = ()

    DERIVED: ClassVar[tuple[str, ...]] = ("ok",)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        """The table ``shapecli inspect`` prints, then its problems: ``print(report)``."""
        printed = self._rendered("table")
        return "\n".join(text.rstrip("\n") for text in printed if text)  # print() ends the line

    def to_json(self) -> str:
        """The JSON document ``shapecli inspect -f json`` prints (``schema_version`` 1)."""
        return self._rendered("json")[0]

    def markdown(self) -> str:
        """The Markdown ``shapecli inspect -f markdown`` prints (for a PR comment)."""
        return self._rendered("markdown")[0]

    def _rendered(self, name: str) -> tuple[str, str]:
        """What ``shapecli inspect -f NAME`` prints on stdout and on stderr."""
        from shapecli.render import REPORT_FORMATS, Options

        rendered = REPORT_FORMATS[name](self, Options())
        return rendered.stdout, rendered.stderr


def copies_label(copies: list[Row]) -> tuple[str, str]:
    """The name and type of a run of repeat copies that did what the first copy did,
    shown as one row or drawn as one node: ``1…11`` and ``block ×11, as 0``."""
    first, last = copies[0], copies[-1]
    name = first.name if len(copies) == 1 else f"{first.name}…{last.name}"
    as_copy = str(first.same_as).rsplit(".", 1)[-1]
    return name, f"{first.type} ×{len(copies)}, as {as_copy}"


def failed_report(
    name: str, spec: str, inputs: tuple[InputSpec, ...], *problems: Problem
) -> Report:
    """The report of a spec that could not be built or run at all (nothing was built, so
    its totals are not complete)."""
    errors = tuple(p for p in problems if p.severity == "error")
    warnings = tuple(p for p in problems if p.severity == "warning")
    totals = Totals(complete=False)
    return Report(name, spec, inputs, totals=totals, errors=errors, warnings=warnings, ran=False)


# -- JSON --------------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    """The stable JSON form of a report (``schema_version`` 1)."""
    return {"schema_version": SCHEMA_VERSION, **_encode(report)}


class OtherDocument(ValueError):
    """A JSON document another shapecli command wrote (``lint -f json``, ``diff -f json``),
    given where a model's report was expected."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"this is what `shapecli {command} -f json` writes, not a model's report "
            "(what `shapecli inspect -f json` writes)"
        )
        self.command = command


#: The keys that only another command's JSON document has at its top level.
OTHER_DOCUMENTS = {"lint": ("summary", "files"), "diff": ("differ", "a", "b")}


def from_json(doc: Any) -> Report:
    """The report a parsed ``inspect --format json`` document holds: the inverse of
    :func:`to_json`. Raises :class:`~shapecli.codec.DecodeError` (a ValueError) at the
    JSON path of the first thing that is not what :func:`to_json` writes, or
    :class:`OtherDocument` for another command's document."""
    if not isinstance(doc, dict):
        raise DecodeError("$", f"expected a shapecli report (an object), got {shown(doc)}")
    for command, keys in OTHER_DOCUMENTS.items():
        if "layers" not in doc and all(key in doc for key in keys):
            raise OtherDocument(command)
    if "schema_version" not in doc:
        raise DecodeError("$", 'missing key "schema_version"')
    version = doc["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DecodeError("$.schema_version", f"expected {SCHEMA_VERSION}, got {shown(version)}")
    report: Report = _decode(Report, {k: v for k, v in doc.items() if k != "schema_version"})
    return report


def read_report(text: str) -> Report:
    """The report in the text of a saved one (:func:`from_json` of it, parsed safely)."""
    return from_json(loads(text, max_depth=depth(Report)))


def report_schema() -> dict[str, Any]:
    """The JSON Schema of :func:`to_json`'s documents, from the same type hints."""
    document = _schema(Report)
    report = document["$defs"]["Report"]
    version = {"const": SCHEMA_VERSION, "description": "the version of this JSON form"}
    report["properties"] = {"schema_version": version, **report["properties"]}
    report["required"] = ["schema_version", *report["required"]]
    return {
        "$schema": document["$schema"],
        "title": f"shapecli report (inspect --format json), schema_version {SCHEMA_VERSION}",
        **{k: v for k, v in document.items() if k != "$schema"},
    }
