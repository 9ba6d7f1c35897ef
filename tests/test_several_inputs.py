"""Models that take several tensors: which is which in the table, and a warning when
an entry gets several without saying so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CONFIGS, Result

Cli = Callable[..., Result]

SELF_ATTENTION = """input:
  x: 2x10x32
  y: 2x10x32
model:
  - Attention: {dim: 32, heads: 4}
  - Linear: [32, 4]
"""


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_a_row_with_several_inputs_names_each_and_its_dtype(cli: Cli, fmt: str) -> None:
    result = cli("inspect", str(CONFIGS / "bert-base.yaml"), "-f", fmt)
    assert result.exit_code == 0
    assert "ids=1×128:int64, types=1×128:int64, mask=1×128:bool" in result.stdout
    assert "x=1×128×768, mask=1×128:bool" in result.stdout  # the keywords it was passed as
    assert "1×128, 1×128, 1×128" not in result.stdout


def test_float32_is_not_written_and_one_input_is_not_labelled(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20")
    assert "input=" not in result.stdout and ":float32" not in result.stdout


def test_an_entry_that_silently_gets_every_input_into_an_optional_parameter_is_warned(
    cli: Cli, write: Callable[..., Path]
) -> None:
    spec = write(SELF_ATTENTION)
    result = cli("inspect", str(spec))
    assert result.exit_code == 0  # it runs: as cross-attention, which is the point
    assert f"{spec}:5:5: warning[layer-warning] layer 0 (Attention) gets all 2 of its list's " in (
        result.stderr
    )
    assert "(x, context); context is optional" in result.stderr
    assert "hint: say what it reads with `in:` (e.g. `in: x`" in result.stderr
    said = write(SELF_ATTENTION.replace("heads: 4}", "heads: 4}\n    in: [x, y]"))  # meant
    assert "warning" not in cli("inspect", str(said)).stderr


@pytest.mark.parametrize("layer", ["Add", "Cat: -1", "MatMul"])
def test_a_layer_that_needs_every_input_gets_them_without_a_warning(
    cli: Cli, write: Callable[..., Path], layer: str
) -> None:
    spec = write(f"input:\n  a: 2x8x8\n  b: 2x8x8\nmodel:\n  - {layer}\n")
    result = cli("inspect", str(spec))
    assert result.exit_code == 0 and result.stderr == ""


def test_a_block_whose_first_entry_gets_every_input_is_warned_too(
    cli: Cli, write: Callable[..., Path]
) -> None:
    spec = write(
        "input:\n  x: 2x10x32\n  y: 2x10x32\n"
        "blocks:\n  attend:\n    inputs: [a, b]\n    body:\n      - Attention: {dim: 32, heads: 4}\n"
        "model:\n  - attend: {}\n"
    )
    result = cli("inspect", str(spec))
    assert "warning[layer-warning]" in result.stderr and "(x, context)" in result.stderr
