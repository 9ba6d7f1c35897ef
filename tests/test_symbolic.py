"""Symbolic sizes: every formula checked against concrete dry runs at other sizes, the
sizes a model accepts, and the layers whose size cannot follow the input's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS, Result
from shapecli.report import Report
from shapecli.spec.parse import parse_spec

Cli = Callable[..., Result]

CONVS = """
input: 1x3x32x32
model:
  - Conv2d: [3, 8, 5]
  - ReLU
  - MaxPool2d: 2
  - Conv2d: [8, 16, 5]
  - AdaptiveAvgPool2d: 1
  - Flatten
  - Linear: [16, 10]
"""


def evaluate(shape: tuple[int | str, ...], sizes: dict[str, int]) -> tuple[int, ...]:
    """A shape of formulas (Python integer arithmetic over the names) at given sizes."""
    return tuple(
        d if isinstance(d, int) else eval(d, {"max": max, "min": min}, dict(sizes)) for d in shape
    )


def agree(symbolic: Report, concrete: Report, sizes: dict[str, int]) -> None:
    """Every row's formulas, evaluated at ``sizes``, are the concrete run's shapes."""
    assert symbolic.ok and concrete.ok, (symbolic.errors, concrete.errors)
    rows = {r.path: r for r in concrete.rows}
    checked = 0
    for row in symbolic.rows:
        if row.status != "ok" or not row.output_shapes:
            continue
        there = rows[row.path]
        assert tuple(evaluate(s, sizes) for s in row.output_shapes) == there.output_shapes, row.path
        assert tuple(evaluate(s, sizes) for s in row.input_shapes) == there.input_shapes, row.path
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    ("source", "symbolic", "sizes"),
    [
        ("resnet18", "Bx3xHxW", {"B": 3, "H": 64, "W": 97}),
        ("mlp", "Bx20", {"B": 5}),
        ("gpt2", "BxT:long", {"B": 3, "T": 77}),
        ("llama-tiny", "BxT:long", {"B": 2, "T": 33}),
        ("convs", "Bx3xHxW", {"B": 2, "H": 64, "W": 97}),
    ],
)
def test_formulas_agree_with_concrete_runs(
    source: str, symbolic: str, sizes: dict[str, int]
) -> None:
    spec = parse_spec(CONVS, "convs.yaml") if source == "convs" else CONFIGS / f"{source}.yaml"
    report = shapecli.inspect(spec, input=symbolic)
    shape, _, dtype = symbolic.partition(":")
    dims = [str(sizes.get(d, d)) for d in shape.split("x")]
    concrete = shapecli.inspect(spec, input="x".join(dims) + (f":{dtype}" if dtype else ""))
    agree(report, concrete, sizes)
    assert report.symbols == tuple(sizes)


def test_a_conv_stack_states_the_sizes_it_accepts() -> None:
    report = shapecli.inspect(parse_spec(CONVS, "convs.yaml"), input="Bx3xHxW")
    # conv 5 → H - 4, pool 2 → H//2 - 2, conv 5 → H//2 - 6 ≥ 1: H ≥ 14
    assert report.constraints == ("H >= 14", "W >= 14")
    row = next(r for r in report.rows if r.path == "3")
    assert row.output_shapes == (("B", 16, "H//2 - 6", "W//2 - 6"),)
    assert not shapecli.inspect(parse_spec(CONVS, "c.yaml"), input="2x3x13x20").ok  # really
    assert shapecli.inspect(parse_spec(CONVS, "c.yaml"), input="2x3x14x14").ok


def test_a_positional_table_bounds_the_sequence() -> None:
    report = shapecli.inspect(CONFIGS / "gpt2.yaml", input="BxT:long")
    assert report.ok and report.constraints == ("T <= 1024",)
    # B < 16 and other specialization guards torch records are tested and dropped
    assert not any(c.startswith("B") for c in report.constraints)


def test_a_layer_whose_size_follows_the_input_is_an_error_naming_the_symbols() -> None:
    report = shapecli.inspect(CONFIGS / "lenet5.yaml", input="Bx1xHxW")
    (error,) = report.errors
    assert error.code == "size-dependent" and error.path == "7"
    assert "changes with H and W" in error.message
    assert error.source is not None and error.source.line == 13
    assert error.hint is not None and "AdaptiveAvgPool2d" in error.hint


def test_mixed_sizes_keep_the_numbers() -> None:
    report = shapecli.inspect(CONFIGS / "resnet18.yaml", input="Bx3x224x224")
    assert report.ok and report.rows[0].output_shapes == (("B", 1000),)
    conv = next(r for r in report.rows if r.path == "conv1")
    assert conv.output_shapes == (("B", 64, 112, 112),)


def test_named_inputs_share_their_symbols(cli: Cli) -> None:
    doc = cli(
        "inspect", str(CONFIGS / "bert-base.yaml"), "-f", "json",
        "-i", "ids=BxT:long", "-i", "types=BxT:long", "-i", "mask=BxT:bool",
    ).json()  # fmt: skip
    assert doc["ok"] and doc["symbols"] == ["B", "T"] and doc["constraints"] == ["T <= 512"]
    assert doc["layers"][0]["output_shapes"] == [["B", "T", 768], ["B", 768]]
    assert doc["totals"]["activation_bytes"] is None and doc["totals"]["params"] == 109_482_240


def test_the_table_and_lint(cli: Cli, write: Callable[..., Path]) -> None:
    table = cli("inspect", str(CONFIGS / "resnet18.yaml"), "-i", "Bx3xHxW").stdout
    assert "B×64×((H - 1)//2 + 1)×((W - 1)//2 + 1)" in table
    assert "formulas in Python integer arithmetic" in table
    spec = write(CONVS.replace("input: 1x3x32x32", "input: Bx3xHxW"))
    result = cli("lint", str(spec), "-f", "json")
    assert result.exit_code == 0 and result.json()["files"][0]["dry_run"] is True
    bad = write(
        "input: Bx1xHxW\nmodel:\n  - LazyConv2d: {out_channels: 4, kernel_size: 3}\n  - Flatten\n  - LazyLinear: 2\n",
        "bad.yaml",
    )
    lines = cli("lint", str(bad)).stdout
    assert "size-dependent" in lines and "changes with H and W" in lines
