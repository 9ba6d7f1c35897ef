"""``shapecli schema``: the spec format as JSON Schema, for editors, and the JSON
report's schema (``--report``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import CONFIGS
from shapecli.report import report_schema
from shapecli.schema import spec_schema
from shapecli.spec.parse import TOP_LEVEL_KEYS


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load(text: str) -> Any:
    return yaml.safe_load(text)


@pytest.mark.slow
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


@pytest.mark.parametrize("name", ["spec.schema.json", "report.schema.json"])
def test_each_shipped_schema_is_what_the_code_generates(name: str) -> None:
    """``shapecli schema`` prints files shipped with the package (no torch import); each
    must be what the code says today. The test reads them and never writes them."""
    from shapecli.schema import generated

    (path, text), *_ = [(p, t) for p, t in generated().items() if p.name == name]
    assert path.read_text(encoding="utf-8") == text, (
        f"{path.name} is not what the code generates: run `python -m shapecli.schema "
        "--write` and commit the file"
    )


def test_the_schema_script_says_what_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shapecli import schema

    stale = tmp_path / "report.schema.json"
    stale.write_text("{}\n")
    current = tmp_path / "spec.schema.json"  # --write touches no file of the checkout
    current.write_text(schema.render(schema.spec_schema()), encoding="utf-8")
    monkeypatch.setattr(schema, "SHIPPED", current)
    monkeypatch.setattr(schema, "REPORT_SHIPPED", stale)
    assert schema.main(["--check"]) == 1 and stale.read_text() == "{}\n"
    assert schema.main(["--write"]) == 0 and schema.main(["--check"]) == 0
    assert json.loads(stale.read_text())["title"].startswith("shapecli report")
    assert schema.main([]) == 2


# -- the JSON report's schema -------------------------------------------------------------


@pytest.fixture(scope="module")
def report_validator() -> jsonschema.Draft202012Validator:
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


REPORT_RUNS = [
    *[[str(p)] for p in sorted(CONFIGS.glob("*.yaml"))],
    [str(CONFIGS / "llama-tiny.yaml"), "--flops", "--memory"],
    [str(CONFIGS / "resnet18.yaml"), "--input", "Bx3xHxW"],
    [str(CONFIGS / "bert-base.yaml"), "--flops"],
    [str(CONFIGS / "mlp.yaml"), "--input", "2x3"],  # a mismatch
    ["nowhere.yaml"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", REPORT_RUNS, ids=lambda a: " ".join(Path(x).name for x in a))
def test_every_report_validates_against_the_report_schema(
    report_validator: jsonschema.Draft202012Validator, cli: Any, args: list[str]
) -> None:
    document = cli("inspect", *args, "-f", "json").json()
    assert [e.message for e in report_validator.iter_errors(document)] == []


def test_shapecli_schema_prints_each_schema(cli: Any) -> None:
    assert cli("schema").json()["title"].startswith("shapecli spec")
    printed = cli("schema", "--report")
    assert printed.exit_code == 0 and printed.json() == report_schema()
