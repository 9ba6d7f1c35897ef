"""Symbolic sizes: every formula checked against concrete dry runs at other sizes, the
sizes a model accepts, and the layers whose size cannot follow the input's."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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

LSTM = """
input: 2x16:long
model:
  - Embedding: [100, 8]
  - LSTM: {input_size: 8, hidden_size: 6, num_layers: 2, bidirectional: true, batch_first: true}
  - Take: 0
  - LazyLinear: 3
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
        # torch's own recurrent kernel cannot run on symbolic sizes: the shape rule does
        ("lstm", "BxT:long", {"B": 3, "T": 41}),
    ],
)
def test_formulas_agree_with_concrete_runs(
    source: str, symbolic: str, sizes: dict[str, int]
) -> None:
    inline = {"convs": CONVS, "lstm": LSTM}
    spec = (
        parse_spec(inline[source], f"{source}.yaml")
        if source in inline
        else CONFIGS / f"{source}.yaml"
    )
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


def test_lint_flops_checks_a_symbolic_spec_and_says_it_did_not_count(
    cli: Cli, write: Callable[..., Path]
) -> None:
    concrete = write("input: 2x16\nmodel:\n  - LazyLinear: 8\n", "a.yaml")
    symbolic = write("input: Bx16\nmodel:\n  - LazyLinear: 8\n  - Linear: [9, 2]\n", "b.yaml")
    doc = cli("lint", str(concrete), str(symbolic), "--flops", "-f", "json").json()
    first, second = doc["files"]
    assert first["totals"]["flops"] == 2 * 2 * 16 * 8 and first["problems"] == []
    codes = [p["code"] for p in second["problems"]]
    assert codes == ["shape-mismatch", "flops-skipped"]  # its shapes were still checked
    skipped = second["problems"][1]
    assert skipped["severity"] == "warning" and "(B)" in skipped["message"]
    assert skipped["source"]["line"] == 1 and "--input" in skipped["hint"]
    assert cli("lint", str(symbolic), "--flops").exit_code == 1  # the error, not exit 2
    assert cli("lint", str(symbolic), "--flops", "-i", "4x16").stdout.count("flops-skipped") == 0


# -- constraints: each one printed holds, and sizes that satisfy them all run --------------------

UNET = """
input: 1x3x16x16
model:
  - LazyConv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    name: enc
  - MaxPool2d: 2
  - LazyConvTranspose2d: {out_channels: 4, kernel_size: 2, stride: 2}
  - Cat: 1
    in: [_, enc]
"""

ENCODER = """
input: {src: 2x10:long, src_mask: 2x10:bool}
model:
  - Embedding: [100, 16]
    in: src
  - PositionalEmbedding: [64, 16]
  - Attention: {dim: auto, heads: 2}
    in: {x: _, mask: src_mask}
"""


def runs(source: str, *inputs: str) -> bool:
    """Whether the spec runs at these concrete sizes."""
    return shapecli.inspect(parse_spec(source, "s.yaml"), input=list(inputs)).ok


def test_a_pool_and_its_upsampling_need_even_sizes() -> None:
    # torch records the need as Eq(H, 2*(H//2)), not as a Mod: it is still divisibility
    report = shapecli.inspect(parse_spec(UNET, "unet.yaml"), input="Bx3xHxW")
    assert report.ok and report.constraints == ("H % 2 == 0", "W % 2 == 0")
    assert not report.warnings
    assert not runs(UNET, "1x3x65x64") and not runs(UNET, "1x3x64x3")  # just outside
    assert runs(UNET, "1x3x2x2") and runs(UNET, "16x3x4x6")  # H ≥ 2 is implied: not printed


def test_sizes_tied_by_the_model_are_an_equality_and_move_together() -> None:
    report = shapecli.inspect(
        parse_spec(ENCODER, "enc.yaml"), input=["src=BxS:long", "src_mask=BxM:bool"]
    )
    assert report.ok and report.constraints == ("M == S", "S <= 64")
    assert not runs(ENCODER, "src=2x10:long", "src_mask=2x11:bool")  # M == S
    assert not runs(ENCODER, "src=2x65:long", "src_mask=2x65:bool")  # S <= 64
    # no S >= 2 (torch's own 0/1 assumption): S = M = 1 runs
    assert runs(ENCODER, "src=1x1:long", "src_mask=1x1:bool")
    assert runs(ENCODER, "src=3x64:long", "src_mask=3x64:bool")


def test_a_size_tied_to_a_number_is_an_equality() -> None:
    report = shapecli.inspect(
        parse_spec(ENCODER, "enc.yaml"), input=["src=Bx10:long", "src_mask=BxS:bool"]
    )
    assert report.ok and report.constraints == ("S == 10",)
    assert not runs(ENCODER, "src=2x10:long", "src_mask=2x11:bool")


def test_constraints_are_python_over_the_names(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(ENCODER)
    doc = cli("inspect", str(spec), "-f", "json", "-i", "src=BxS:long", "-i", "src_mask=BxM:bool")
    constraints = doc.json()["constraints"]
    assert all(eval(c, {}, {"B": 2, "S": 7, "M": 7}) for c in constraints)
    assert not all(eval(c, {}, {"B": 2, "S": 7, "M": 8}) for c in constraints)
    table = cli("inspect", str(spec), "-i", "src=BxS:long", "-i", "src_mask=BxM:bool").stdout
    assert "the model accepts M == S, S ≤ 64" in table


STEM = """
input: 1x3x64x64
model:
  - Conv2d: {in_channels: 3, out_channels: 4, kernel_size: 4, stride: 4}
  - Permute: [0, 2, 3, 1]
  - Linear: [4, 4]
  - Permute: [0, 3, 1, 2]
  - AdaptiveAvgPool2d: 1
"""

PATCHES = """
input: 1x3x16x16
model:
  - Conv2d: {in_channels: 3, out_channels: 8, kernel_size: 4, stride: 4}
  - Flatten: {start_dim: 2}
  - Transpose: [1, 2]
  - PositionalEmbedding: [16, 8]
"""


def test_a_bound_torch_specialized_gives_way_to_the_one_the_model_needs() -> None:
    # torch's range says H >= 8 (it assumed H//4 > 1, one patch is no size-1 case);
    # 7 runs, so that is no requirement, but the stem's H >= 4 is
    report = shapecli.inspect(parse_spec(STEM, "stem.yaml"), input="Bx3xHxW")
    assert report.ok and report.constraints == ("H >= 4", "W >= 4")
    assert runs(STEM, "1x3x4x4") and runs(STEM, "1x3x7x7")
    assert not runs(STEM, "1x3x3x8") and not runs(STEM, "1x3x8x3")


def test_a_rule_over_two_names_stays_python() -> None:
    # 16 positions: (H//4)*(W//4) patches may not exceed them, in whatever shape
    report = shapecli.inspect(parse_spec(PATCHES, "patches.yaml"), input="Bx3xHxW")
    assert report.ok
    assert report.constraints == ("H >= 4", "W >= 4", "(H//4)*(W//4) <= 16")
    assert runs(PATCHES, "1x3x16x16") and runs(PATCHES, "1x3x4x64") and runs(PATCHES, "1x3x16x4")
    assert not runs(PATCHES, "1x3x16x20") and not runs(PATCHES, "1x3x4x68")


@pytest.mark.parametrize(
    ("accepted", "constraints"),
    [
        (lambda v: v % 2 == 0, ["H % 2 == 0"]),
        (lambda v: v >= 14, ["H >= 14"]),
        (lambda v: 3 <= v <= 10, ["H >= 3", "H <= 10"]),
        (lambda v: v == 10, ["H == 10"]),
        (lambda v: v >= 5 and v % 2 == 1, ["H >= 5", "H % 2 == 1"]),
        (lambda v: v >= 224 and (v // 4) % 56 == 0, ["H >= 224", "(H//4) % 56 == 0"]),
        (lambda v: v < 5 or v > 10, None),  # no plain form: torch's own rules stay
    ],
)
def test_a_names_rules_summarized(accepted: Callable[[int], bool], constraints: list[str]) -> None:
    from shapecli.symbolic import _fit, _plain

    sizes = [v for v in range(1, 1001) if accepted(v)]
    pattern = _fit(sizes, 1000)
    assert (pattern and [r.text for r in _plain("H", pattern, ())]) == constraints
    if pattern:  # the text says exactly what the pattern is
        assert all(
            eval(" and ".join(constraints), {}, {"H": v}) == accepted(v) for v in range(1, 1001)
        )


def test_what_torch_assumed_and_python_cannot_say_is_a_warning() -> None:
    import sympy
    from torch.utils._sympy.functions import CeilToInt, IntTrueDiv

    from shapecli.symbolic import _accepted, _Facts

    h = sympy.Symbol("H", integer=True, positive=True)
    facts = _Facts({"H": (2, math.inf)}, {}, (sympy.Gt(CeilToInt(IntTrueDiv(h, 3)), 2), h >= 4))
    calls: list[dict[str, int]] = []

    def run(sizes: dict[str, int]) -> Any:
        calls.append(sizes)
        return SimpleNamespace(report=SimpleNamespace(ok=sizes["H"] >= 4))

    constraints, warnings = _accepted(facts, {"H": 64}, run)
    assert constraints == ["H >= 4"] and calls[-1] == {"H": 3}
    (warning,) = warnings
    assert warning.code == "size-assumption" and warning.severity == "warning"
    assert "CeilToInt" in warning.message and "fewer sizes" in warning.message


def test_a_size_dependent_layer_is_found_along_tied_names() -> None:
    # S alone cannot double (the mask is M long): S and M double together
    spec = parse_spec(
        ENCODER.replace("  - PositionalEmbedding: [64, 16]\n", "")
        + "  - Flatten\n  - LazyLinear: 4\n",
        "flat.yaml",
    )
    report = shapecli.inspect(spec, input=["src=BxS:long", "src_mask=BxM:bool"])
    (error,) = report.errors
    assert error.code == "size-dependent" and "changes with S and M" in error.message


PARALLEL = """
input: 1x3x16x16
model:
  - Parallel:
      branches:
        - [LazyConv2d: {out_channels: 4, kernel_size: 1}]
        - [LazyConv2d: {out_channels: 4, kernel_size: 1}]
      merge: MERGE
"""


@pytest.mark.parametrize(
    ("merge", "shape"), [("cat", ("B", 8, "H", "W")), ("stack", ("B", 2, 4, "H", "W"))]
)
def test_parallel_merges_symbolic_sizes(merge: str, shape: tuple[object, ...]) -> None:
    # the merge compared and hashed torch.SymInt sizes: an internal error
    report = shapecli.inspect(parse_spec(PARALLEL.replace("MERGE", merge), "p.yaml"), input="Bx3xHxW")
    assert report.ok, report.errors
    assert report.rows[1].output_shapes == (shape,)
