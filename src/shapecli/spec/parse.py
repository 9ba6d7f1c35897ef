"""Located YAML nodes → a resolved :class:`~shapecli.spec.model.Spec`.

This is where the spec format (docs/spec.md) is enforced: top-level keys, the four
entry forms, reserved entry keys (``name``, ``repeat``, ``tie``, ``trainable``, ``init``,
and in format 2 ``in`` and ``if``), ``params`` with ``${…}`` expressions and ``--set``
overrides, parametric ``blocks`` (each use a fresh copy), ``input:`` and ``output:``.
Names an entry reads are resolved here (:mod:`shapecli.spec.dataflow`). Every error
carries the ``file:line:col`` of the node it is about.

Type names are *not* resolved here beyond blocks and shapecli's own layers: resolving
``torch.nn`` names needs torch, which the build step imports. Keeping this step
torch-free keeps YAML and spec errors instant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from shapecli.errors import Problem, ShapecliError, Source, did_you_mean, fail, raise_all
from shapecli.inputs import InputError, InputSpec, make_input, parse_input
from shapecli.layers.catalog import OWN_LAYERS
from shapecli.spec import yaml_nodes
from shapecli.spec.dataflow import PREVIOUS, ListNames
from shapecli.spec.expressions import ExpressionError, Value, substitute
from shapecli.spec.model import (
    AUTO,
    ENTRY_OPTIONS,
    INIT_SCHEMES,
    ArgValue,
    Entry,
    Spec,
    TensorRef,
    Wiring,
)
from shapecli.spec.yaml_nodes import Map, Node, Scalar, Seq
from shapecli.untrusted import describe, hidden_character, read_bounded, visible

FORMAT_VERSION = 2
TOP_LEVEL_KEYS = (
    "shapecli",
    "name",
    "description",
    "input",
    "params",
    "blocks",
    "imports",
    "model",
    "output",
    "init",
)
RESERVED_KEYS = ENTRY_OPTIONS
BLOCK_KEYS = ("params", "body", "description", "inputs", "output")
#: What format version 1 does not have, and the version that does.
VERSION_2 = "needs format version 2 (`shapecli: 2`, the default when `shapecli:` is left out)"
MAX_MODULES = 100_000
MAX_REPEAT = 10_000
MAX_EXPANSION = 25_000  # entries the parser writes out; blocks with equal params share one
MAX_BLOCK_DEPTH = 32  # blocks used inside blocks
MAX_NESTING = 64  # layer lists inside layer lists, blocks included

_NAME = re.compile(r"[A-Za-z0-9_]+")
_RESERVED_NAMES = frozenset({PREVIOUS})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MODULE_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")  # layer names may be indices


def read_spec(path: str | Path, overrides: Mapping[str, Value] | None = None) -> Spec:
    """Read and parse a spec file; unreadable files are ``file-error`` (exit 2)."""
    file = str(path)
    data = read_bounded(file, yaml_nodes.MAX_BYTES)
    return parse_spec(yaml_nodes.decode(data, file), file, overrides)


def parse_spec(text: str, file: str, overrides: Mapping[str, Value] | None = None) -> Spec:
    """Parse spec text; ``file`` is used for locations and the default name.

    ``overrides`` replace ``params`` values; a string is read as a YAML scalar, as
    ``--set d_model=512`` gives it.
    """
    root = yaml_nodes.parse(text, file)
    return _SpecParser(file, dict(overrides or {})).spec(root)


class _Limit(ShapecliError):
    """A spec too big or too deep to go on with: stops the parse at once."""


def _invalid(message: str, source: Source, *, hint: str | None = None) -> ShapecliError:
    """``spec-invalid`` at ``source``: what almost every check here finds."""
    return fail("spec-invalid", message, source, hint=hint)


def _limit(message: str, source: Source) -> _Limit:
    return _Limit(Problem("spec-invalid", message, source))


@dataclass
class _Block:
    name: str
    body: Node
    params: dict[str, Node] = field(default_factory=dict)
    inputs: tuple[str, ...] = ("#0",)
    output: Node | None = None

    @property
    def named_inputs(self) -> bool:
        return self.inputs != ("#0",)


@dataclass(frozen=True)
class _Scope:
    """Names visible to ``${…}``, the block uses that led here (for recursion and depth
    checks) and how deeply layer lists are nested here."""

    values: Mapping[str, Value]
    blocks: tuple[str, ...] = ()
    depth: int = 0
    names: ListNames | None = None  # the tensors entries here can read

    def deeper(self, source: Source) -> _Scope:
        if self.depth >= MAX_NESTING:
            raise _limit(
                f"layer lists are nested more than {MAX_NESTING} levels deep (blocks included)",
                source,
            )
        return replace(self, depth=self.depth + 1)


class _SpecParser:
    def __init__(self, file: str, overrides: dict[str, Value]) -> None:
        self.file = file
        self.overrides = overrides
        self.blocks: dict[str, _Block] = {}
        self.params: dict[str, Value] = {}
        self.problems: list[Problem] = []
        self.work = 0  # entries written out so far: the expansion stops at MAX_EXPANSION
        self.expanded: dict[tuple[object, ...], Entry] = {}
        self.counts: dict[int, int] = {}
        self.version = FORMAT_VERSION
        self.warnings: list[Problem] = []

    # -- top level -------------------------------------------------------------------

    def spec(self, root: Node | None) -> Spec:
        where = Source(self.file, 1, 1)
        if root is None:
            raise _invalid("the spec is empty; it needs at least a `model:` list", where)
        if not isinstance(root, Map):
            raise _invalid(
                "a spec is a mapping with a `model:` key (and optionally name, input, params, "
                "blocks)",
                root.source,
            )
        for key, key_node in root.keys.items():
            if key not in TOP_LEVEL_KEYS:
                raise _invalid(
                    f"unknown top-level key `{key}`{did_you_mean(key, TOP_LEVEL_KEYS)}; "
                    f"allowed: {', '.join(TOP_LEVEL_KEYS)}",
                    key_node.source,
                )
        values = root.values
        if "shapecli" in values:
            version = self._scalar(values["shapecli"], "format version")
            if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
                raise _invalid(
                    f"unsupported format version {version!r}; this shapecli reads versions 1 "
                    f"and {FORMAT_VERSION}",
                    values["shapecli"].source,
                )
            assert isinstance(version, int)
            self.version = version
        name = self._model_name(values["name"]) if "name" in values else Path(self.file).stem
        description = (
            self._text(values["description"], "`description`") if "description" in values else None
        )
        params = self.params = self._params(values.get("params"))
        imports = self._imports(values.get("imports"))
        self._collect_blocks(values.get("blocks"))
        inputs: tuple[InputSpec, ...] = ()
        if "input" in values:
            inputs = self._inputs(values["input"], _Scope(params))
        if "model" not in values:
            raise _invalid("the spec has no `model:`; add the list of layers", where)
        empty = values["model"]
        if (isinstance(empty, Scalar) and empty.value is None) or (
            isinstance(empty, Seq) and not empty.items
        ):
            raise _invalid(
                "`model:` is empty; it needs at least one layer, e.g. `- LazyLinear: 10`",
                empty.source,
            )
        named = tuple(i.name for i in inputs if i.name is not None)
        names = ListNames(named if named else ("#0",))
        model = self._list_entry(values["model"], "", _Scope(params, names=names), names)
        if "output" in values:
            self._version_2("`output:`", values["output"].source)
            model = replace(model, output=self._output(values["output"], names))
        raise_all(self.problems)
        for unread in (n for n in named if n not in names.read):
            self.warnings.append(
                Problem(
                    "unused-input",
                    f"the model input `{unread}` is never read; read it with `in:`, or remove it",
                    values["input"].source,
                    severity="warning",
                )
            )
        count = self._count(model)
        init = self._init(values["init"], _Scope(params)) if "init" in values else None
        return Spec(
            name=name,
            file=self.file,
            model=model,
            inputs=inputs,
            input_source=values["input"].source if "input" in values else None,
            description=description,
            params=params,
            imports=imports,
            version=self.version,
            module_count=count,
            warnings=tuple(self.warnings),
            blocks=tuple(self.blocks),
            init=init,
        )

    def _version_2(self, what: str, source: Source) -> None:
        if self.version < 2:
            raise _invalid(f"{what} {VERSION_2}", source)

    def _params(self, node: Node | None) -> dict[str, Value]:
        unknown = sorted(
            set(self.overrides) - (set(node.values) if isinstance(node, Map) else set())
        )
        if unknown:
            defined = list(node.values) if isinstance(node, Map) else []
            raise fail(
                "usage",
                f"--set {unknown[0]}=…: the spec defines no param `{unknown[0]}`"
                f"{did_you_mean(unknown[0], defined)} (params: {', '.join(defined) or 'none'})",
            )
        if node is None:
            return {}
        if not isinstance(node, Map):
            raise _invalid("`params` is a mapping of names to values", node.source)
        params: dict[str, Value] = {}
        for key, value in node.values.items():
            self._identifier(key, node.keys[key].source, "param")
            params[key] = self._param_value(value, params)
            if key in self.overrides:
                params[key] = self._override(key, self.overrides[key], params[key], params)
        return params

    def _override(self, key: str, raw: Value, default: Value, scope: Mapping[str, Value]) -> Value:
        """``--set key=raw``: read as a YAML value (``[1, 7]`` is a list) and of the same
        kind as the param's own value, or a usage error that names the option."""
        what = f"--set {key}={raw if isinstance(raw, str) else _show_value(raw)}"
        value: Value = raw
        if isinstance(raw, str):
            if not raw.strip():
                example = f"--set {key}={_show_value(default)}"
                raise fail("usage", f"{what}: give a value after `=`, e.g. {example}")
            try:
                node = yaml_nodes.parse(raw, "--set")
            except ShapecliError as e:
                raise fail("usage", f"{what}: {e.problem.message}") from None
            if isinstance(node, Map) or node is None:
                raise fail("usage", f"{what}: a param is a value or a list of values")
            try:
                value = self._param_value(node, scope)
            except ShapecliError as e:
                raise fail("usage", f"{what}: {e.problem.message}") from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise fail("usage", f"{what}: the number does not fit in 64 bits")
        kind = _kind(default)
        if (
            kind is not None
            and _kind(value) != kind
            and not (kind == "a number" and _kind(value) == "a whole number")
        ):
            hint = yaml_nodes.yaml11_hint(value) if kind == "true or false" else None
            raise fail(
                "usage",
                f"{what}: `{key}` is {kind} in the spec ({_show_value(default)}), "
                f"not {_kind(value) or 'null'}" + (f" ({hint})" if hint else ""),
            )
        return value

    def _param_value(self, node: Node, scope: Mapping[str, Value]) -> Value:
        if isinstance(node, Seq):
            items = []
            for item in node.items:
                value = self._param_value(item, scope)
                if isinstance(value, tuple) or not isinstance(item, Scalar):
                    raise _invalid("a list param holds single values", item.source)
                items.append(value)
            return tuple(items)
        if not isinstance(node, Scalar):
            raise _invalid(
                "a param is a single value (number, string or bool) or a list of them", node.source
            )
        value = node.value
        return self._substitute(value, scope, node.source) if isinstance(value, str) else value

    def _imports(self, node: Node | None) -> tuple[str, ...]:
        if node is None:
            return ()
        items = node.items if isinstance(node, Seq) else (node,)
        names = []
        for item in items:
            name = self._text(item, "an import")
            if not _DOTTED.fullmatch(name):
                raise _invalid(f"`{name}` is not a package name", item.source)
            names.append(name)
        return tuple(names)

    def _collect_blocks(self, node: Node | None) -> None:
        if node is None:
            return
        if not isinstance(node, Map):
            raise _invalid("`blocks` is a mapping of block names to blocks", node.source)
        for name, body in node.values.items():
            where = node.keys[name].source
            self._identifier(name, where, "block")
            if name in OWN_LAYERS:
                raise _invalid(
                    f"block `{name}` has the name of a shapecli layer; choose another name", where
                )
            if isinstance(body, Seq):
                self.blocks[name] = _Block(name, body)
                continue
            if not isinstance(body, Map):
                raise _invalid(
                    f"block `{name}` is a list of layers or a mapping with `params` and `body`",
                    body.source,
                )
            for key, key_node in body.keys.items():
                if key not in BLOCK_KEYS:
                    raise _invalid(
                        f"unknown key `{key}` in block `{name}`{did_you_mean(key, BLOCK_KEYS)}; "
                        f"a block has {', '.join(f'`{k}`' for k in BLOCK_KEYS)}",
                        key_node.source,
                    )
            if "body" not in body.values:
                raise _invalid(f"block `{name}` has no `body`", body.source)
            block = _Block(name, body.values["body"], output=body.values.get("output"))
            if "output" in body.values:
                self._version_2("a block's `output:`", body.keys["output"].source)
            if "inputs" in body.values:
                self._version_2("a block's `inputs:`", body.keys["inputs"].source)
                block.inputs = self._input_names(body.values["inputs"], name)
            params = body.values.get("params")
            if params is not None:
                if not isinstance(params, Map):
                    raise _invalid(
                        "block `params` is a mapping of names to defaults", params.source
                    )
                for key, value in params.values.items():
                    self._identifier(key, params.keys[key].source, "param")
                    block.params[key] = value
            self.blocks[name] = block

    def _input_names(self, node: Node, block: str) -> tuple[str, ...]:
        items = node.items if isinstance(node, Seq) else (node,)
        names: dict[str, Source] = {}
        for item in items:
            name = self._text(item, "an input name")
            self._input_name(name, item.source)
            if name in names:
                raise _invalid(f"block `{block}` has two inputs named `{name}`", item.source)
            names[name] = item.source
        if not names:
            raise _invalid(f"block `{block}` needs at least one input", node.source)
        return tuple(names)

    def _input_name(self, name: str, source: Source) -> None:
        self._identifier(name, source, "input")
        if name in _RESERVED_NAMES:
            raise _invalid(f"`{name}` cannot name an input", source)

    def _inputs(self, node: Node, scope: _Scope) -> tuple[InputSpec, ...]:
        one_input = isinstance(node, Map) and ("shape" in node.values or "dtype" in node.values)
        if isinstance(node, Map) and not one_input:
            self._version_2("named inputs", node.source)
            named = []
            for key, value in node.values.items():
                self._input_name(key, node.keys[key].source)
                named.append(self._input(value, scope).named(key))
            if not named:
                raise _invalid("`input` names no input", node.source)
            return tuple(named)
        if (
            isinstance(node, Seq)
            and node.items
            and not all(
                isinstance(i, Scalar)
                and isinstance(i.value, int | str)
                and "x" not in str(i.value)
                and ":" not in str(i.value)
                for i in node.items
            )
        ):
            return tuple(self._input(item, scope) for item in node.items)
        return (self._input(node, scope),)

    def _input(self, node: Node, scope: _Scope) -> InputSpec:
        try:
            if isinstance(node, Scalar) and node.value is not None:
                # The text as written: YAML reads `0x20` as hex and `20` as a number.
                raw = node.text if node.plain else str(node.value)
                text = self._substitute(raw, scope.values, node.source)
                return parse_input(str(text))
            if isinstance(node, Seq):
                dims = tuple(self._dim(item, scope) for item in node.items)
                return make_input(dims, "float32", _show(node))
            if isinstance(node, Map):
                for key in node.values:
                    if key not in ("shape", "dtype"):
                        raise _invalid(
                            f"`{key}`{did_you_mean(key, ['shape', 'dtype'])}: an input mapping "
                            "has `shape` and optionally `dtype`",
                            node.keys[key].source,
                        )
                if "shape" not in node.values:
                    raise _invalid("this input mapping has no `shape`", node.source)
                shape = self._input(node.values["shape"], scope)
                dtype = node.values.get("dtype")
                dtype_name = self._text(dtype, "`dtype`") if dtype is not None else shape.dtype
                return make_input(shape.dims, dtype_name, _show(node))
        except InputError as e:
            raise _invalid(str(e), node.source) from None
        raise _invalid(
            "`input` is a shape like 2x20, [2, 20] or 1x1024:long, "
            "a mapping {shape: …, dtype: …}, or a list of these",
            node.source,
        )

    def _dim(self, node: Node, scope: _Scope) -> int | str:
        value = self._resolve(node, scope)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _invalid(f"dimension {value!r} is not a size", node.source)
        return value

    # -- entries ---------------------------------------------------------------------

    def _list_entry(self, node: Node, name: str, scope: _Scope, names: ListNames) -> Entry:
        """The model, or a block's body: a layer list reading ``names.inputs`` — or one
        entry where a list may be written."""
        if isinstance(node, Seq):
            entries = self._list(node, scope, names)
            return Entry(
                "Sequential", name, node.source, args=entries, inputs=names.inputs, closed=True
            )
        if isinstance(node, Map) and "in" in node.values:
            raise _invalid(
                "`in:` is for entries of a layer list; a single layer here reads all of "
                "the inputs in order (write a list to read them by name)",
                node.keys["in"].source,
            )
        entry = self._entry(node, name, replace(scope.deeper(node.source), names=names))
        if entry is None:
            raise _invalid("`if:` drops the only layer here", node.source)
        names.define(entry.name, entry.source)
        return entry

    def _entry(self, node: Node, name: str, scope: _Scope) -> Entry | None:
        """One item of a layer list (or the whole ``model:``); None when its ``if:`` is
        false."""
        self.work += 1
        if self.work > MAX_EXPANSION:
            raise _limit(
                f"expanding this spec's blocks writes out more than {MAX_EXPANSION:,} "
                "entries (each use of a block with new params is written out anew); that is "
                "the limit",
                node.source,
            )
        if isinstance(node, Seq):
            names = ListNames(("#0",), parent=scope.names)
            return Entry("Sequential", name, node.source, args=self._list(node, scope, names))
        if isinstance(node, Scalar):
            type_name = self._type_name(node)
            return self._typed(type_name, None, name, node.source, {}, scope)
        if not isinstance(node, Map):  # pragma: no cover - nodes are one of three kinds
            raise _invalid("not a layer", node.source)
        types = [k for k in node.values if k not in RESERVED_KEYS]
        if not types:
            raise _invalid(
                "this entry has no layer type; write e.g. `- LazyLinear: 10`", node.source
            )
        if len(types) > 1:
            second = types[1]
            near = did_you_mean(second, RESERVED_KEYS)
            message = (
                f"`{second}` is not an entry option{near}; options are {', '.join(RESERVED_KEYS)}"
                if near
                else f"this entry has two layer types, `{types[0]}` and `{second}`; "
                "each list item is one layer (is a `-` missing?)"
            )
            raise _invalid(message, node.keys[second].source)
        type_key = node.keys[types[0]]
        type_name = self._type_name(type_key)
        if "name" in node.values:
            name = self._entry_name(node.values["name"], scope)
        if "repeat" in node.values and self._repeat(node.values["repeat"], scope) == 0:
            if scope.names is None:
                raise _invalid("`repeat: 0` leaves nothing here", node.source)
            scope.names.drop(name, node.values["repeat"].source)  # zero copies: not there
            return None
        if "if" in node.values:
            condition = node.values["if"]
            self._version_2("`if:`", node.keys["if"].source)
            if scope.names is None:
                raise _invalid("`if:` is for entries of a layer list", condition.source)
            said = (
                "`if` is true or false — a bool param like `${pooler}` or a comparison "
                "like `${layers > 6}` —"
            )
            if not self._bool(condition, scope, said):
                scope.names.drop(name, condition.source)
                return None
        options = {k: v for k, v in node.values.items() if k in RESERVED_KEYS}
        return self._typed(type_name, node.values[types[0]], name, type_key.source, options, scope)

    def _list(self, node: Seq, scope: _Scope, names: ListNames) -> tuple[Entry, ...]:
        """A layer list; names are unique among siblings (default: the index).

        A problem with one entry does not stop the others from being checked: each is
        collected (``lint`` reports them all) and the entry left out — its name still
        counts as defined, so entries that read it do not report it again.
        """
        entries: list[Entry] = []
        seen: dict[str, Source] = {}
        scope = replace(scope.deeper(node.source), names=names)
        declared = [_declared_name(item, str(i)) for i, item in enumerate(node.items)]
        names.later = {n: item.source for n, item in zip(declared, node.items, strict=True)}
        for item, name in zip(node.items, declared, strict=True):
            try:
                entry = self._entry(item, name, scope)
                if entry is None:
                    continue
                if entry.name in seen:
                    raise _invalid(
                        f"two layers in this list are named `{entry.name}` (the other at line "
                        f"{seen[entry.name].line}); names must be unique among siblings",
                        entry.source,
                    )
                if entry.name in _RESERVED_NAMES:
                    raise _invalid(f"`{entry.name}` cannot name a layer", entry.source)
                names.define(entry.name, entry.source)
            except _Limit:
                raise
            except ShapecliError as e:
                self.problems.extend(e.problems)
                names.defined.setdefault(name, item.source)
                names.later.pop(name, None)
                continue
            seen[entry.name] = entry.source
            entries.append(entry)
        return tuple(entries)

    def _typed(
        self,
        type_name: str,
        value: Node | None,
        name: str,
        source: Source,
        options: dict[str, Node],
        scope: _Scope,
    ) -> Entry:
        wiring = None
        if "in" in options:
            self._version_2("`in:`", options["in"].source)
            if scope.names is None:
                raise _invalid("`in:` is for entries of a layer list", options["in"].source)
            wiring = self._wiring(options["in"], scope.names)
        if type_name in self.blocks:
            block = self.blocks[type_name]
            self._check_block_inputs(block, wiring, scope.names, source)
            body = self._expand_block(block, value, source, scope)
            entry = replace(body, name=name, source=source)
        else:
            args, kwargs, arg_sources = self._arguments(type_name, value, scope)
            entry = Entry(type_name, name, source, args, kwargs, arg_sources=arg_sources)
            shape = OWN_LAYERS.get(type_name)
            if wiring is None and shape is not None and not shape.takes_input:
                wiring = Wiring()  # a free tensor (`Param`) reads nothing
        if wiring is None and scope.names is not None and scope.names.previous is None:
            scope.names.read.update(scope.names.inputs)  # the first entry: all the list's inputs
        entry = replace(entry, wiring=wiring)
        if "repeat" in options:
            entry = replace(entry, repeat=self._repeat(options["repeat"], scope))
        if self._count(entry) > MAX_MODULES:
            raise _limit(
                f"this entry expands to {self._count(entry):,} layers (blocks and `repeat` "
                f"multiply); the limit for a whole model is {MAX_MODULES:,}",
                source,
            )
        if "trainable" in options:
            said = "`trainable` is true or false,"
            entry = replace(entry, trainable=self._bool(options["trainable"], scope, said))
        if "tie" in options:
            tie, tie_sources = self._tie(options["tie"])
            entry = replace(entry, tie=tie, tie_sources=tie_sources)
        if "init" in options:
            entry = replace(entry, init=self._init(options["init"], scope))
        if type_name == "Ref":
            _check_ref_options(entry, options)
        return entry

    def _wiring(self, node: Node, names: ListNames) -> Wiring:
        """``in: name``, ``in: [a, _, b]`` (positional) or ``in: {key: a}`` (keywords)."""
        if isinstance(node, Map):
            kwargs = {}
            for key, value in node.values.items():
                self._identifier(key, node.keys[key].source, "keyword")
                kwargs[key] = self._ref(value, names)
            return Wiring(kwargs=kwargs)
        items = node.items if isinstance(node, Seq) else (node,)
        return Wiring(tuple(self._ref(item, names) for item in items))

    def _ref(self, node: Node, names: ListNames) -> TensorRef:
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _invalid(
                "`in:` names tensors: a model or block input, an earlier entry's `name:`, "
                "or `_` for the previous entry's output",
                node.source,
            )
        return names.resolve(str(value), node.source)

    def _check_block_inputs(
        self, block: _Block, wiring: Wiring | None, names: ListNames | None, source: Source
    ) -> None:
        """A block gets exactly the inputs it declares."""
        wanted = len(block.inputs)
        if wiring is not None:
            if wiring.kwargs:
                raise _invalid(
                    f"block `{block.name}` takes its inputs in order: "
                    f"`in: [{', '.join(block.inputs)}]`",
                    source,
                )
            given = len(wiring.args)
            how = f"`in:` gives {given}"
        elif names is not None and names.previous is None:
            given = len(names.inputs)
            how = f"as the first entry it gets this list's {given} input{'s' if given != 1 else ''}"
        else:
            given, how = 1, "without `in:` it gets just the previous output"
        if given != wanted:
            declared = ", ".join(block.inputs) if block.named_inputs else "one"
            raise _invalid(
                f"block `{block.name}` takes {wanted} input{'s' if wanted != 1 else ''} "
                f"({declared}); {how}",
                source,
                hint=f"pass them with `in: [{', '.join(['_', *block.inputs[1:]])}]`"
                if block.named_inputs
                else None,
            )

    def _output(self, node: Node, names: ListNames) -> tuple[TensorRef, ...]:
        """``output:`` — names, in order; names dropped by ``if:`` are left out."""
        items = node.items if isinstance(node, Seq) else (node,)
        refs = []
        for item in items:
            value = item.value if isinstance(item, Scalar) else None
            if isinstance(value, str | int) and str(value) in names.dropped:
                continue
            refs.append(self._ref(item, names))
        if not refs:
            raise _invalid("every name in `output:` is dropped by its `if:`", node.source)
        return tuple(refs)

    def _arguments(
        self, type_name: str, node: Node | None, scope: _Scope
    ) -> tuple[tuple[ArgValue, ...], dict[str, ArgValue], dict[str, Source]]:
        """The four entry forms → positional args, keyword args, and where each is written."""
        shape = OWN_LAYERS.get(type_name)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return (), {}, {}
        if isinstance(node, Map):
            kwargs: dict[str, ArgValue] = {}
            sources: dict[str, Source] = {}
            for key, value in node.values.items():
                self._identifier(key, node.keys[key].source, "argument")
                kwargs[key] = self._argument(type_name, key, value, scope)
                sources[key] = value.source
            return (), kwargs, sources
        target = (shape.list_to if isinstance(node, Seq) else shape.scalar_to) if shape else None
        if target is not None:
            return (
                (),
                {target: self._argument(type_name, target, node, scope)},
                {target: node.source},
            )
        items = node.items if isinstance(node, Seq) else (node,)
        args = tuple(self._resolve(item, scope) for item in items)
        return args, {}, {str(i): item.source for i, item in enumerate(items)}

    def _argument(self, type_name: str, key: str, node: Node, scope: _Scope) -> ArgValue:
        shape = OWN_LAYERS.get(type_name)
        if shape and key in shape.layers:
            if (isinstance(node, Seq) and not node.items) or (
                isinstance(node, Scalar) and node.value is None
            ):
                raise _invalid(f"`{key}` needs at least one layer", node.source)
            return self._layer_list(node, scope)
        if shape and key in shape.branches:
            if not isinstance(node, Seq) or not node.items:
                raise _invalid(
                    f"`{key}` is a list of layer lists, at least one (an empty list `[]` is a "
                    "branch that passes its input on)",
                    node.source,
                )
            return tuple(
                () if isinstance(item, Seq) and not item.items else self._layer_list(item, scope)
                for item in node.items
            )
        return self._resolve(node, scope)

    def _layer_list(self, node: Node, scope: _Scope) -> ArgValue:
        """A layer list held by a layer (a Residual's ``body``, a Parallel branch): it
        reads the layer's input, and may read the names of the lists around it."""
        names = ListNames(("#0",), parent=scope.names)
        if isinstance(node, Seq):
            return self._list(node, scope, names)
        entry = self._entry(node, "0", replace(scope.deeper(node.source), names=names))
        if entry is None:
            raise _invalid("`if:` drops the only layer here", node.source)
        return (entry,)

    def _expand_block(self, block: _Block, node: Node | None, use: Source, scope: _Scope) -> Entry:
        """A fresh copy of a block's body, its params bound at this use."""
        if block.name in scope.blocks:
            chain = " → ".join((*scope.blocks, block.name))
            raise _invalid(f"block `{block.name}` uses itself ({chain})", use)
        if len(scope.blocks) >= MAX_BLOCK_DEPTH:
            chain = " → ".join((*scope.blocks[:3], "…", *scope.blocks[-2:], block.name))
            raise _limit(
                f"blocks are used inside blocks more than {MAX_BLOCK_DEPTH} levels deep ({chain})",
                use,
            )
        names = list(block.params)
        given: dict[str, Node] = {}
        if isinstance(node, Map):
            for key, value in node.values.items():
                if key not in block.params:
                    raise _invalid(
                        f"block `{block.name}` has no param `{key}`{did_you_mean(key, names)}; "
                        f"its params: {', '.join(names) or 'none'}",
                        node.keys[key].source,
                    )
                given[key] = value
        elif node is not None and not (isinstance(node, Scalar) and node.value is None):
            items = node.items if isinstance(node, Seq) else (node,)
            if len(items) > len(names):
                raise _invalid(
                    f"block `{block.name}` takes {len(names)} param(s) "
                    f"({', '.join(names) or 'none'}),"
                    f" {len(items)} given",
                    node.source,
                )
            given = dict(zip(names, items, strict=False))
        # A body sees the spec's params and its block's own. Defaults are evaluated in
        # that scope; values given at the use site in the scope of the use.
        values: dict[str, Value] = dict(self.params)
        for key, default in block.params.items():
            if key in given:
                values[key] = self._param_value(given[key], scope.values)
            else:
                values[key] = self._param_value(default, values)
        # Uses with the same params share one expansion (its modules are still built
        # fresh for each use): a block used twice in a block used twice … costs one
        # expansion per level, not 2**levels.
        memo = (block.name, scope.depth, *(values[k] for k in block.params))
        if memo in self.expanded:
            return self.expanded[memo]
        inputs = ListNames(block.inputs)  # a block is a function: nothing from outside
        body_scope = _Scope(values, (*scope.blocks, block.name), scope.depth, inputs)
        body = self._list_entry(block.body, block.name, body_scope, inputs)
        if not isinstance(block.body, Seq):
            body = Entry("Sequential", block.name, block.body.source, args=(body,))
        output = self._output(block.output, inputs) if block.output is not None else None
        expanded = replace(body, block=block.name, inputs=block.inputs, output=output, closed=True)
        self.expanded[memo] = expanded
        return expanded

    # -- values ----------------------------------------------------------------------

    def _resolve(self, node: Node, scope: _Scope) -> ArgValue:
        """An argument value: expressions evaluated, lists as tuples, ``auto`` as AUTO."""
        if isinstance(node, Scalar):
            value: Value = node.value
            if isinstance(value, str):
                value = self._substitute(value, scope.values, node.source)
            if value == "auto":
                return AUTO
            return value
        if isinstance(node, Seq):
            return tuple(self._resolve(item, scope) for item in node.items)
        assert isinstance(node, Map)
        return {key: self._resolve(value, scope) for key, value in node.values.items()}

    def _substitute(self, text: str, scope: Mapping[str, Value], source: Source) -> Value:
        try:
            return substitute(text, scope)
        except ExpressionError as e:
            raise _invalid(f"in {text!r}: {e}", source) from None

    def _count(self, entry: Entry) -> int:
        """Modules this entry builds, ``repeat`` included (nested repeats multiply);
        shared expansions are counted once per use, but computed once."""
        if id(entry) not in self.counts:
            inner = 1 + sum(self._count(child) for _, child in entry.children())
            copies = entry.repeat if entry.repeat is not None else 1
            self.counts[id(entry)] = copies * inner + (1 if entry.repeat is not None else 0)
        return self.counts[id(entry)]

    def _scalar(self, node: Node, what: str) -> Value:
        if not isinstance(node, Scalar):
            raise _invalid(f"{what} must be a single value", node.source)
        return node.value

    def _text(self, node: Node, what: str) -> str:
        value = self._scalar(node, what)
        if not isinstance(value, str):
            raise _invalid(f"{what} must be text", node.source)
        return value

    def _model_name(self, node: Node) -> str:
        """The top-level ``name:``: free text, shown in every report's title, so a
        character that is invisible there (a control or format character) is refused."""
        name = self._text(node, "`name`")
        hidden = hidden_character(name)
        if hidden is not None:
            raise _invalid(
                f"the model's `name` is shown in every report, and {describe(hidden)} (a "
                f"control or format character, invisible there) is not allowed in it: "
                f"`{visible(name)}`",
                node.source,
            )
        return name

    def _type_name(self, node: Scalar) -> str:
        value = node.value
        if value is None:
            raise _invalid(
                "this list item is empty; the model needs at least one layer here (e.g. "
                "`- LazyLinear: 10`)",
                node.source,
            )
        if isinstance(value, str) and " - " in value:
            first, _, second = value.partition(" - ")
            raise _invalid(
                f"`{first}` and `- {second}` were read as one text: `- {second}` is indented "
                f"deeper than `- {first}`; items of one list start in the same column",
                node.source,
            )
        if not isinstance(value, str) or not _DOTTED.fullmatch(value):
            raise _invalid(
                f"{value!r} is not a layer type; a type is a name like `LazyLinear` or `ReLU`",
                node.source,
            )
        return value

    def _identifier(self, key: str, source: Source, what: str) -> None:
        if not _IDENTIFIER.fullmatch(key):
            raise _invalid(f"`{key}` is not a valid {what} name", source)

    def _entry_name(self, node: Node, scope: _Scope) -> str:
        value = self._resolve(node, scope)
        name = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not _NAME.fullmatch(name):
            raise _invalid(
                f"layer name {value!r} must be ASCII letters (a-z, A-Z), digits and underscores "
                "(no dots)",
                node.source,
            )
        return name

    def _repeat(self, node: Node, scope: _Scope) -> int:
        value = self._resolve(node, scope)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT:
            raise _invalid(
                f"`repeat` is a whole number from 0 to {MAX_REPEAT:,}, not {value!r}", node.source
            )
        return value

    def _bool(self, node: Node, scope: _Scope, said: str) -> bool:
        """A value that must be true or false; ``said`` is the message up to "not …"."""
        value = self._resolve(node, scope)
        if not isinstance(value, bool):
            hint = yaml_nodes.yaml11_hint(value)  # in the message: lint prints no hints
            message = f"{said} not {value!r}{f'; {hint}' if hint else ''}"
            raise _invalid(message, node.source)
        return value

    def _init(self, node: Node, scope: _Scope) -> str:
        """``init: xavier_uniform`` — one of :data:`INIT_SCHEMES` (an expression may
        give it)."""
        value = self._resolve(node, scope)
        if not isinstance(value, str) or value not in INIT_SCHEMES:
            near = did_you_mean(value, INIT_SCHEMES) if isinstance(value, str) else ""
            raise _invalid(
                f"`init` is one of {', '.join(INIT_SCHEMES)}, not {_show_value(value)}{near}",
                node.source,
            )
        return value

    def _tie(self, node: Node) -> tuple[dict[str, str], dict[str, Source]]:
        if not isinstance(node, Map):
            raise _invalid(
                "`tie` maps this layer's parameters to others: {weight: path.to.layer.weight}",
                node.source,
            )
        ties: dict[str, str] = {}
        sources: dict[str, Source] = {}
        for key, value in node.values.items():
            target = value.value if isinstance(value, Scalar) else None
            if (
                not isinstance(target, str)
                or not _MODULE_PATH.fullmatch(target)
                or "." not in target
            ):
                raise _invalid(
                    f"`tie: {{{key}: …}}` needs a parameter path like `0.weight`", value.source
                )
            ties[key] = target
            sources[key] = value.source
        return ties, sources


def _check_ref_options(entry: Entry, options: dict[str, Node]) -> None:
    """Refuse what a ``Ref`` cannot do. A Ref is the layer it names, not a copy: its
    weights are one set of tensors, so they cannot be frozen, or initialized another
    way, at one use only. Said where it is written, with where it belongs."""
    written = entry.args[0] if entry.args else entry.kwargs.get("target")
    target = f"`{written}`" if isinstance(written, str) else "the layer it names"
    if "trainable" in options and not entry.trainable:
        raise _invalid(
            "`trainable: false` cannot freeze a `Ref`: a Ref is the very layer it names, "
            "with the same weights at every use, so they are trainable everywhere or nowhere",
            options["trainable"].source,
            hint=f"put `trainable: false` on {target} itself: that freezes every use of it",
        )
    if "init" in options:
        raise _invalid(
            "`init` cannot apply to a `Ref`: a Ref is the very layer it names, whose "
            "weights are initialized once, where it is defined",
            options["init"].source,
            hint=f"put `init: {entry.init}` on {target} itself",
        )


def _declared_name(node: Node, default: str) -> str:
    """The name an item of a layer list will have, read before it is parsed."""
    written = node.values.get("name") if isinstance(node, Map) else None
    value = written.value if isinstance(written, Scalar) else None
    if isinstance(value, str | int) and not isinstance(value, bool) and "${" not in str(value):
        return str(value)
    return default


def _kind(value: object) -> str | None:
    """A value's kind in words, for --set's checks (None: anything goes)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, tuple):
        return "a list"
    return None


def _show_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_show_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _show(node: Node) -> str:
    if isinstance(node, Scalar):
        return str(node.value) if node.plain else f'"{node.value}"'
    if isinstance(node, Seq):
        return "[" + ", ".join(_show(i) for i in node.items) + "]"
    assert isinstance(node, Map)
    return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in node.values.items()) + "}"


__all__ = ["parse_spec", "read_spec"]
