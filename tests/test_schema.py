"""``shapecli schema``: the spec format as JSON Schema, for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import CONFIGS
from shapecli.schema import spec_schema
from shapecli.spec.parse import TOP_LEVEL_KEYS


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load(text: str) -> Any:
    return yaml.safe_load(text)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_validates(
    validator: jsonschema.Draft202012Validator, path: Path
) -> None:
    errors = [e.message for e in validator.iter_errors(load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize(
    "text",
    [
        "modle: [ReLU]\n",  # unknown top-level key
        "name: x\n",  # no model
        "model: [ReLU]\ninput: 2×20\n",  # not the input grammar
        "model: [ReLU]\ninput: 0x20\n",
        "model: [ReLU]\ninput: {shape: 2x3, dtype: complex}\n",
        "model:\n  - LazyLinear: 4\n    repeat: -1\n",
        "model:\n  - LazyLinear: 4\n    trainable: maybe\n",
        "model:\n  - LazyLinear: {out_feature: 4}\n",  # unknown argument
        "model:\n  - LazyLinear: {out_features: '4'}\n",  # text, not a number
        "model:\n  - Conv2d: {in_channels: 3, out_channels: 8, kernel_size: 3, padding_mode: bad}\n",
        "model:\n  - Parallel: {branches: [[ReLU]], merge: concat}\n",
        "model:\n  - LazyLinear: {device: cuda, out_features: 3}\n",  # shapecli decides the device
        "blocks:\n  b: {body: [ReLU], bogus: 1}\nmodel: [b]\n",
        "shapecli: 3\nmodel: [ReLU]\n",
    ],
)
def test_invalid_specs_do_not_validate(
    validator: jsonschema.Draft202012Validator, text: str
) -> None:
    assert not validator.is_valid(load(text))


@pytest.mark.parametrize(
    "text",
    [
        "model:\n  - LayerNorm: auto\n  - Linear: {in_features: auto, out_features: '${d * 2}'}\nparams: {d: 4}\n",
        "blocks:\n  b: {params: {n: 1}, body: [ReLU]}\nmodel:\n  - b: {n: 2}\n    name: first\n",
        "model:\n  - mypkg.layers.Block: {width: 3}\n",  # user code, allowed on the command line
        "input: [1x8:long, {shape: [B, 8], dtype: int64}]\nmodel: [ReLU]\n",
    ],
)
def test_valid_forms_validate(validator: jsonschema.Draft202012Validator, text: str) -> None:
    assert validator.is_valid(load(text)), list(validator.iter_errors(load(text)))


def test_the_schema_follows_the_parser() -> None:
    schema = spec_schema()
    assert list(schema["properties"]) == list(TOP_LEVEL_KEYS)
    entry = schema["$defs"]["entry"]["anyOf"][2]["properties"]
    assert "Attention" in entry and "LazyLinear" in entry and "ModuleList" not in entry
    assert "auto" in entry["LayerNorm"]["description"]


def test_the_shipped_schema_is_what_the_code_generates(request: pytest.FixtureRequest) -> None:
    """``shapecli schema`` prints a file shipped with the package (no torch import);
    it must be what the loader and argument checker say today."""
    from shapecli.schema import SHIPPED, render

    generated = render(spec_schema())
    if request.config.getoption("--update-golden"):
        SHIPPED.write_text(generated, encoding="utf-8")
    assert SHIPPED.read_text(encoding="utf-8") == generated, "run pytest --update-golden"
