"""``--input``: a strict ASCII grammar."""

from __future__ import annotations

import pytest

from shapecli.inputs import InputError, InputSpec, parse_input


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
