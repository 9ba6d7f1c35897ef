"""The spec format: entry forms, params and expressions, blocks, repeat — and errors
that point at the line and column of what is wrong."""

from __future__ import annotations

import pytest

from shapecli.errors import ShapecliError
from shapecli.inputs import InputSpec
from shapecli.spec.model import AUTO, Entry, Spec
from shapecli.spec.parse import parse_spec


def spec(text: str, **overrides: object) -> Spec:
    return parse_spec(text, "s.yaml", overrides)  # type: ignore[arg-type]


def entries(text: str) -> tuple[Entry, ...]:
    model = spec(text).model
    assert model.type == "Sequential"
    return tuple(e for e in model.args if isinstance(e, Entry))


def problem(text: str, **overrides: object) -> tuple[str, int, int, str]:
    with pytest.raises(ShapecliError) as info:
        spec(text, **overrides)
    p = info.value.problem
    line, column = (p.source.line, p.source.column) if p.source else (0, 0)
    return p.code, line, column, p.message


def test_the_four_entry_forms_and_nested_lists() -> None:
    e = entries(
        """
model:
  - ReLU
  - LazyLinear: 256
  - Conv2d: [3, 64, 3]
  - LazyConv2d: {out_channels: 64, kernel_size: [3, 3]}
  - [Flatten, {LazyLinear: 10}]
"""
    )
    assert [x.type for x in e] == ["ReLU", "LazyLinear", "Conv2d", "LazyConv2d", "Sequential"]
    assert e[0].args == () and e[0].kwargs == {}
    assert e[1].args == (256,)
    assert e[2].args == (3, 64, 3)
    assert e[3].kwargs == {"out_channels": 64, "kernel_size": (3, 3)}
    nested = [c.type for c in e[4].args if isinstance(c, Entry)]
    assert nested == ["Flatten", "LazyLinear"]
    assert [x.name for x in e] == ["0", "1", "2", "3", "4"]
    assert (e[2].source.line, e[2].source.column) == (5, 5)


def test_reserved_keys() -> None:
    (e,) = entries(
        "model:\n  - LazyLinear: 8\n    name: head\n    repeat: 3\n    trainable: false\n"
    )
    assert (e.name, e.repeat, e.trainable) == ("head", 3, False)


def test_params_expressions_keep_types_and_set_overrides() -> None:
    text = """
params: {d: 768, ff: "${d * 4}", tag: "x${d}"}
model:
  - LazyLinear: "${ff}"
  - LazyLinear: {out_features: "${d}", bias: false}
"""
    s = spec(text)
    assert s.params == {"d": 768, "ff": 3072, "tag": "x768"}
    assert s.model.args[0].args == (3072,)  # type: ignore[union-attr]
    s = spec(text, d="512")
    assert s.params["ff"] == 2048
    assert s.model.args[1].kwargs == {"out_features": 512, "bias": False}  # type: ignore[union-attr]


def test_set_of_an_unknown_param_is_a_usage_error() -> None:
    code, _, _, message = problem("params: {d: 1}\nmodel: [ReLU]\n", e="2")
    assert code == "usage" and "no param `e`" in message and "params: d" in message


def test_auto_is_a_marker() -> None:
    (e,) = entries("model:\n  - LayerNorm: auto\n")
    assert e.args == (AUTO,)


def test_blocks_are_fresh_parametric_copies() -> None:
    text = """
params: {width: 8}
blocks:
  mlp:
    params: {hidden: 16, out: "${width}"}
    body:
      - LazyLinear: "${hidden}"
      - ReLU
      - LazyLinear: "${out}"
  act: [ReLU]
model:
  - mlp: {hidden: 32}
  - mlp
  - mlp: [64, 4]
  - act
"""
    e = entries(text)
    assert [x.block for x in e] == ["mlp", "mlp", "mlp", "act"]
    sizes = [[c.args for c in b.args if isinstance(c, Entry)] for b in e[:3]]
    assert sizes == [[(32,), (), (8,)], [(16,), (), (8,)], [(64,), (), (4,)]]
    inner = e[0].args[0]
    assert isinstance(inner, Entry) and e[0].source.line == 12  # the use
    assert inner.source.line == 7  # where the user wrote the layer
    assert e[1].args[0] is not inner  # other params: another expansion


def test_block_errors() -> None:
    base = "blocks:\n  b:\n    params: {n: 1}\n    body: [ReLU]\nmodel:\n"
    assert problem(base + "  - b: {m: 2}\n")[:2] == ("spec-invalid", 6)
    assert "did you mean" not in problem(base + "  - b: {m: 2}\n")[3]
    assert "takes 1 param" in problem(base + "  - b: [1, 2]\n")[3]
    loop = "blocks:\n  a: [b]\n  b: [a]\nmodel: [a]\n"
    assert "uses itself (a → b → a)" in problem(loop)[3]


def test_module_count_is_capped_before_building() -> None:
    text = "blocks:\n  b:\n    - ReLU:\n      repeat: 1000\nmodel:\n  - b:\n    repeat: 1000\n"
    code, line, _, message = problem(text)
    assert code == "spec-invalid" and "limit" in message and line == 6


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("[1, 2]\n", (1, 1), "a mapping with a `model:`"),
        ("modle: []\n", (1, 1), "did you mean `model`"),
        ("name: x\n", (1, 1), "no `model:`"),
        ("model:\n  - LazyLinear: 1\n    repaet: 2\n", (3, 5), "did you mean `repeat`"),
        ("model:\n  - LazyLinear: 1\n    ReLU: null\n", (3, 5), "is a `-` missing"),
        ("model:\n  - name: x\n", (2, 5), "no layer type"),
        ("model:\n  - ReLU: null\n    name: a\n  - ReLU: null\n    name: a\n", (4, 5), "named `a`"),
        ("model:\n  - ReLU: null\n    name: a.b\n", (3, 11), "no dots"),
        ("model:\n  - ReLU: null\n    repeat: -1\n", (3, 13), "`repeat`"),
        ("model:\n  - ReLU: null\n    trainable: no\n", (3, 16), "YAML 1.2 reads `no` as text"),
        ("model:\n  - LazyLinear: ${x}\n", (2, 17), "unknown name `x`"),
        ("model:\n  - LazyLinear: \"${__import__('os')}\"\n", (2, 17), "not allowed"),
        ("model:\n  - 12\n", (2, 5), "not a layer type"),
        ("shapecli: 3\nmodel: [ReLU]\n", (1, 11), "version"),
        ("input: 2x0\nmodel: [ReLU]\n", (1, 8), "sizes start at 1"),
        ("model:\n  - ReLU: null\n    tie: {weight: x}\n", (3, 19), "parameter path"),
    ],
)
def test_errors_are_located(text: str, where: tuple[int, int], fragment: str) -> None:
    code, line, column, message = problem(text)
    assert code == "spec-invalid"
    assert (line, column) == where, message
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "inputs"),
    [
        ("2x20", (InputSpec((2, 20)),)),
        ("[2, 20]", (InputSpec((2, 20)),)),
        ("1x1024:long", (InputSpec((1, 1024), "int64"),)),
        ("{shape: [1, 8], dtype: long}", (InputSpec((1, 8), "int64"),)),
        ("[2x20, 2x30]", (InputSpec((2, 20)), InputSpec((2, 30)))),
        ("[B, 20]", (InputSpec(("B", 20)),)),
    ],
)
def test_input_forms(text: str, inputs: tuple[InputSpec, ...]) -> None:
    assert spec(f"input: {text}\nmodel: [ReLU]\n").inputs == inputs


def test_name_defaults_to_the_file_stem() -> None:
    assert parse_spec("model: [ReLU]\n", "dir/my-net.yaml").name == "my-net"
