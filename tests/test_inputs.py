"""``--input``: a strict ASCII grammar."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import CONFIGS, Result
from shapecli.inputs import InputError, InputSpec, merge_inputs, parse_input

Cli = Callable[..., Result]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2x20", InputSpec((2, 20))),
        ("1x3x224x224", InputSpec((1, 3, 224, 224))),
        ("1x1024:long", InputSpec((1, 1024), "int64")),
        ("4:bfloat16", InputSpec((4,), "bfloat16")),
        ("[2, 20]", InputSpec((2, 20))),
        ("[1,8]:int32", InputSpec((1, 8), "int32")),
        ("Bx3xHxW", InputSpec(("B", 3, "H", "W"))),
    ],
)
def test_accepted(text: str, expected: InputSpec) -> None:
    assert parse_input(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2x-3", "negative"),
        ("2x20x", "missing"),
        ("x2", "missing"),
        ("2×20", "use the letter x"),
        ("２x20", "not allowed"),
        ("1_000x20", "neither a size nor a name"),
        ("0x20", "sizes start at 1"),
        ("02x20", "leading zero"),
        ("2x20:complex", "unknown dtype"),
        ("4294967296x4294967296x4", "do not fit in int64"),
        ("99999999999999999999x2", "too large"),
        ("", "missing"),
        ("2 x 20", "spaces are not allowed"),
        ("x".join(["2"] * 17), "at most 16"),
        # a symbolic size is declared by its capital letter: a typo is not a 1-D input
        (
            "bad",
            "'bad' is not a size; a symbolic size is a name that starts with a capital letter, e.g. Bad",
        ),
        ("Bx3xhxW", "'h' is not a size"),
        ("[B, 3, h]", "'h' is not a size"),
        ("_B", "symbolic size starts with a capital letter"),
    ],
)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_input(text)


@pytest.mark.parametrize(
    ("declared", "given", "fragment"),
    [
        (
            ["2x20"],
            ["2x20", "2x5"],
            r"reads 1 input \(its `input:` is 2x20\); --input gave 2 shapes",
        ),
        (
            ["2x20", "2x5"],
            ["4x20"],
            r"reads 2 inputs \(its `input:` is 2x20, 2x5\); --input gave 1 shape$",
        ),
        (["2x20", "2x5"], ["2x20", "2x5", "2x5"], "reads 2 inputs .*gave 3 shapes"),
    ],
)
def test_as_many_shapes_as_the_spec_has_inputs(
    declared: list[str], given: list[str], fragment: str
) -> None:
    with pytest.raises(InputError, match=fragment):
        merge_inputs(tuple(map(parse_input, declared)), tuple(map(parse_input, given)))
    assert merge_inputs((), tuple(map(parse_input, given))) == tuple(map(parse_input, given))


@pytest.mark.parametrize("command", ["inspect", "lint"])
def test_too_many_shapes_for_a_spec_is_an_input_error_not_a_layers_mismatch(
    cli: Cli, command: str
) -> None:
    result = cli(command, str(CONFIGS / "mlp.yaml"), "-i", "2x20", "-i", "2x5")
    said = result.stdout + result.stderr  # lint reports on stdout
    assert result.exit_code == 2, said
    assert "error[input-invalid] the model reads 1 input (its `input:` is 2x20)" in said
    assert "shape-mismatch" not in said
