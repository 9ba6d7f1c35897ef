"""The JSON Schema (draft 2020-12) of the spec format, for editors.

Generated, not written: top-level keys, entry options and block keys come from the
parser's own constants, dtypes from the input grammar, and every layer's arguments
from the same signatures the argument checker uses — so the schema cannot drift from
what ``shapecli`` accepts. It is a *guide* for completion and early red squiggles;
the loader stays the judge (it also checks what a schema cannot say: one type per
entry, param expressions, shapes). Point yaml-language-server at it with a first
line ``# yaml-language-server: $schema=shapecli.schema.json``.

Generating it reads every ``torch.nn`` class, so it needs torch (seconds); the package
ships the generated text (``spec.schema.json``, next to this module) and ``shapecli
schema`` prints that, instantly — as ``shapecli schema --report`` prints
``report.schema.json``, the JSON report's schema (:func:`shapecli.report.report_schema`).
``python -m shapecli.schema --write`` writes both files; ``tests/test_schema.py`` fails
while a shipped file is not what the code generates now.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from shapecli.inputs import DTYPES, grammar_pattern
from shapecli.layers import arguments
from shapecli.layers.auto import auto_rules
from shapecli.layers.catalog import OWN_LAYERS
from shapecli.layers.registry import all_layers
from shapecli.report import report_schema
from shapecli.spec.model import INIT_SCHEMES
from shapecli.spec.parse import BLOCK_KEYS, MAX_REPEAT, RESERVED_KEYS, TOP_LEVEL_KEYS

Schema = dict[str, Any]

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TYPE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
PARAMETER_PATH = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+$"
EXPRESSION: Schema = {"type": "string", "pattern": r"\$\{", "description": "a ${…} expression"}
AUTO: Schema = {"const": "auto", "description": "take this size from the first input"}
SCALAR: Schema = {"type": ["string", "number", "boolean", "null"]}
PARAM: Schema = {"anyOf": [SCALAR, {"type": "array", "items": SCALAR}]}
LAYERS: Schema = {"$ref": "#/$defs/layers"}
TENSOR_NAME: Schema = {
    "anyOf": [{"type": "string", "pattern": r"^([A-Za-z0-9_]+|_)$"}, {"type": "integer"}],
    "description": "a model or block input, an earlier entry's name, or _ (the previous output)",
}
NAMES: Schema = {"anyOf": [TENSOR_NAME, {"type": "array", "items": TENSOR_NAME, "minItems": 1}]}
INIT: Schema = {"anyOf": [{"enum": list(INIT_SCHEMES)}, EXPRESSION]}
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


SHIPPED = Path(__file__).with_name("spec.schema.json")
REPORT_SHIPPED = Path(__file__).with_name("report.schema.json")


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """Each shipped schema file and the text the code generates for it now."""
    return {SHIPPED: render(spec_schema()), REPORT_SHIPPED: render(report_schema())}


def main(argv: list[str]) -> int:
    """``python -m shapecli.schema --write``: write the shipped schema files;
    ``--check``: exit 1, naming them, when they are not what the code generates."""
    if argv not in (["--write"], ["--check"]):
        print("usage: python -m shapecli.schema --write | --check", file=sys.stderr)
        return 2
    texts = generated()
    stale = [path for path, text in texts.items() if _read(path) != text]
    for path in stale:
        if argv == ["--write"]:
            path.write_text(texts[path], encoding="utf-8")
        print(f"{'wrote' if argv == ['--write'] else 'stale:'} {path}", file=sys.stderr)
    return 1 if stale and argv == ["--check"] else 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def spec_schema() -> Schema:
    """The whole schema, as a JSON-ready dict."""
    top: dict[str, Schema] = {
        "shapecli": {"enum": [1, 2], "description": "spec format version (default 2)"},
        "name": {"type": "string", "description": "defaults to the file name"},
        "description": {"type": "string"},
        "input": {"$ref": "#/$defs/inputs"},
        "params": _named(PARAM, "values for ${…} expressions; --set name=value overrides"),
        "blocks": _named({"$ref": "#/$defs/block"}),
        "imports": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "packages the spec uses; imported only with --allow-import",
        },
        "model": {"$ref": "#/$defs/entry"},
        "output": {**NAMES, "description": "the tensors the model returns (a list: a tuple)"},
        "init": {**INIT, "description": "how `shapecli build` initializes the weights"},
    }
    assert list(top) == list(TOP_LEVEL_KEYS), "schema and parser disagree on top-level keys"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "shapecli spec, format version 2",
        "type": "object",
        "properties": top,
        "required": ["model"],
        "additionalProperties": False,
        "$defs": {
            "layers": {"type": "array", "items": {"$ref": "#/$defs/entry"}},
            "entry": _entry(),
            "block": _block(),
            "inputs": _inputs(),
        },
    }


def _named(values: Schema, description: str | None = None) -> Schema:
    """An object whose keys are names (params, blocks), each holding ``values``."""
    named = {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": values}
    return named if description is None else {**named, "description": description}


def _entry() -> Schema:
    layers = all_layers()
    options: dict[str, Schema] = {
        "name": {
            "anyOf": [{"type": "string", "pattern": r"^[A-Za-z0-9_]+$"}, {"type": "integer"}],
            "description": "a label, unique among siblings",
        },
        "repeat": {
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_REPEAT}, EXPRESSION],
            "description": "fresh copies with independent parameters (0: the entry is left out)",
        },
        "tie": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": PARAMETER_PATH},
            "description": "this layer's parameter *is* that one: {weight: path.to.weight}",
        },
        "trainable": {"type": "boolean"},
        "in": {
            "anyOf": [
                TENSOR_NAME,
                {"type": "array", "items": TENSOR_NAME},
                {"type": "object", "additionalProperties": TENSOR_NAME},
            ],
            "description": "the tensors this entry reads: one, a list (positional), or a "
            "mapping (keywords); default: the previous entry's output",
        },
        "if": {
            "anyOf": [{"type": "boolean"}, EXPRESSION],
            "description": "the entry exists only when this is true",
        },
        "init": {**INIT, "description": "how `shapecli build` initializes this layer's weights"},
    }
    assert list(options) == list(RESERVED_KEYS), "schema and parser disagree on entry options"
    properties = {**options, **{name: _arguments(name, cls) for name, cls in layers.items()}}
    return {
        "anyOf": [
            {"anyOf": [{"enum": list(layers)}, {"type": "string", "pattern": TYPE_NAME}]},
            LAYERS,
            {
                "type": "object",
                "properties": properties,
                # a block of the spec, or user code allowed with --allow-import
                "patternProperties": {TYPE_NAME: {}},
                "additionalProperties": False,
                "minProperties": 1,
            },
        ]
    }


def _arguments(name: str, cls: type) -> Schema:
    """What ``Name: …`` may hold: nothing, one value, a list, or keyword arguments."""
    shape = OWN_LAYERS.get(name)
    rules = auto_rules(cls)
    parameters = arguments.signature(cls).parameters.values()
    keywords: dict[str, Schema] = {}
    for p in parameters:
        if p.name in arguments.FORBIDDEN or p.name.startswith("_") or p.kind in _VARIADIC:
            continue
        if shape and p.name in shape.layers:
            keywords[p.name] = LAYERS
        elif shape and p.name in shape.branches:
            keywords[p.name] = {"type": "array", "items": LAYERS}
        else:
            keywords[p.name] = _value(p, auto=p.name in rules)
    keyword_form: Schema = {"type": "object", "properties": keywords}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        keyword_form["additionalProperties"] = False
    return {
        "anyOf": [{"type": "null"}, SCALAR, AUTO, {"type": "array"}, keyword_form],
        "description": arguments.usage(cls, name, tuple(rules)),
    }


def _value(parameter: inspect.Parameter, auto: bool) -> Schema:
    annotation = parameter.annotation
    described = annotation is not inspect.Parameter.empty and not isinstance(annotation, str)
    schema = _type(annotation) if described else _type(type(parameter.default))
    options = [schema, EXPRESSION, *([AUTO] if auto else [])]
    return {"anyOf": options} if schema else {}


def _type(annotation: Any) -> Schema:
    """An annotation as JSON Schema; ``{}`` (anything) for what YAML cannot express."""
    simple = {int: "integer", float: "number", bool: "boolean", str: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if annotation is type(None) or annotation is None:
        return {"type": "null"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args]
        return {} if any(not p for p in parts) else {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (tuple, list) or (isinstance(annotation, type) and issubclass(annotation, tuple)):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return {
                "type": "array",
                "prefixItems": [_type(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        item = _type(args[0]) if args else {"type": "integer"}
        return {"type": "array", "items": item} if item else {"type": "array"}
    return {}


def _block() -> Schema:
    full: dict[str, Schema] = {
        "params": _named(PARAM, "defaults of the block's params"),
        "body": {"$ref": "#/$defs/entry"},
        "description": {"type": "string"},
        "inputs": {
            "anyOf": [
                {"type": "string", "pattern": NAME},
                {"type": "array", "items": {"type": "string", "pattern": NAME}, "minItems": 1},
            ],
            "description": "the names of the block's inputs, in order",
        },
        "output": {**NAMES, "description": "the tensors the block returns"},
    }
    assert list(full) == list(BLOCK_KEYS), "schema and parser disagree on block keys"
    return {
        "anyOf": [
            LAYERS,
            {
                "type": "object",
                "properties": full,
                "required": ["body"],
                "additionalProperties": False,
            },
        ]
    }


def _inputs() -> Schema:
    dim: Schema = {
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": NAME}]
    }
    text: Schema = {
        "anyOf": [{"type": "string", "pattern": grammar_pattern()}, EXPRESSION],
        "description": "2x20, 1x3x224x224, 1x1024:long",
    }
    one: Schema = {
        "anyOf": [
            text,
            {"type": "array", "items": dim, "minItems": 1},
            {
                "type": "object",
                "properties": {
                    "shape": {"anyOf": [text, {"type": "array", "items": dim}]},
                    "dtype": {"enum": list(DTYPES)},
                },
                "required": ["shape"],
                "additionalProperties": False,
            },
        ]
    }
    named: Schema = {
        "type": "object",
        "propertyNames": {"pattern": NAME, "not": {"enum": ["shape", "dtype"]}},
        "additionalProperties": one,
        "minProperties": 1,
        "description": "named inputs, in the order the model takes them",
    }
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}, named]}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
