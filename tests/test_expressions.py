"""``${…}``: arithmetic over params, nothing else."""

from __future__ import annotations

import pytest

from shapecli.spec.expressions import (
    ExpressionError,
    UndefinedError,
    compile_expression,
    substitute,
)

SCOPE = {"d": 768, "heads": 12, "name": "gpt", "ratio": 0.5}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("${d * 4}", 3072),
        ("${d // heads}", 64),
        ("${d / heads}", 64.0),
        ("${(d + 1) % 5}", 4),
        ("${-d}", -768),
        ("${max(d, 1024)}", 1024),
        ("${min(2, 3, 1)}", 1),
        ("${ratio * 2}", 1.0),
        ("layer_${heads}", "layer_12"),
        ("${name}", "gpt"),
        ("plain", "plain"),
    ],
)
def test_values(text: str, value: object) -> None:
    result = substitute(text, SCOPE)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${__import__('os')}", "not allowed"),
        ("${d.bit_length()}", "not allowed"),
        ("${d ** 2}", "not allowed"),
        ("${[1][0]}", "not allowed"),
        ("${lambda: 1}", "not allowed"),
        ("${d if d else 1}", "not allowed"),
        ("${open('x')}", "not allowed"),
        ("${nope}", "unknown name `nope`"),
        ("${d / 0}", "division by zero"),
        ("${name * 2}", "not a number"),
        ("${99999999999 * 99999999999}", "64 bits"),
        ("${}", "empty"),
        ("${d", "unclosed"),
        ("${" + "1+" * 200 + "1}", "longer than"),
    ],
)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment.replace("(", r"\(")):
        substitute(text, SCOPE)


def test_compiled_once_evaluated_at_many_sizes() -> None:
    # what symbolic sizes use for formulas and constraints: no eval, the same grammar
    formula = compile_expression("(H - 1)//2 + 1")
    assert [formula({"H": h}) for h in (1, 2, 3, 64)] == [1, 1, 2, 32]
    bounded = compile_expression("31 <= H <= 34 and H % 2 == 0")
    assert [h for h in range(28, 38) if bounded({"H": h})] == [32, 34]
    assert compile_expression("max(1, H) * min(W, 3)")({"H": 0, "W": 5}) == 3


def test_compiled_refuses_before_evaluating() -> None:
    for text in ("H ** 2", "H.real", "__import__('os')", "H if H else 1", "[H][0]"):
        with pytest.raises(ExpressionError, match="not allowed"):
            compile_expression(text)
    with pytest.raises(UndefinedError, match="division by zero"):
        compile_expression("H // (W - 1)")({"H": 4, "W": 1})
    long = " + ".join(["H"] * 100)
    with pytest.raises(ExpressionError, match="longer than"):
        compile_expression(long)
    assert compile_expression(long, limit=None)({"H": 1}) == 100
