"""Symbolic sizes: every formula checked against concrete dry runs at other sizes, the
sizes a model accepts, and the layers whose size cannot follow the input's."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS, Result
from shapecli.report import Report
from shapecli.spec.expressions import compile_expression
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


def evaluate(shape: tuple[int | str | None, ...], sizes: dict[str, int]) -> tuple[object, ...]:
    """A shape of formulas (integer arithmetic over the names) at given sizes."""
    return tuple(
        d if not isinstance(d, str) else compile_expression(d, None, conditional=True)(sizes)
        for d in shape
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_named_inputs_share_their_symbols(cli: Cli) -> None:
    doc = cli(
        "inspect", str(CONFIGS / "bert-base.yaml"), "-f", "json",
        "-i", "ids=BxT:long", "-i", "types=BxT:long", "-i", "mask=BxT:bool",
    ).json()  # fmt: skip
    assert doc["ok"] and doc["symbols"] == ["B", "T"] and doc["constraints"] == ["T <= 512"]
    assert doc["layers"][0]["output_shapes"] == [["B", "T", 768], ["B", 768]]
    assert doc["totals"]["activation_bytes"] is None and doc["totals"]["params"] == 109_482_240


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_size_tied_to_a_number_is_an_equality() -> None:
    report = shapecli.inspect(
        parse_spec(ENCODER, "enc.yaml"), input=["src=Bx10:long", "src_mask=BxS:bool"]
    )
    assert report.ok and report.constraints == ("S == 10",)
    assert not runs(ENCODER, "src=2x10:long", "src_mask=2x11:bool")


@pytest.mark.slow
def test_constraints_are_python_over_the_names(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(ENCODER)
    doc = cli("inspect", str(spec), "-f", "json", "-i", "src=BxS:long", "-i", "src_mask=BxM:bool")
    constraints = [compile_expression(c) for c in doc.json()["constraints"]]
    assert all(c({"B": 2, "S": 7, "M": 7}) for c in constraints)
    assert not all(c({"B": 2, "S": 7, "M": 8}) for c in constraints)
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
    from shapecli.symbolic.rules import fit, plain_rules

    sizes = [v for v in range(1, 1001) if accepted(v)]
    pattern = fit(sizes, 1000)
    assert (pattern and [r.text for r in plain_rules("H", pattern, ())]) == constraints
    if pattern:  # the text says exactly what the pattern is
        both = compile_expression(" and ".join(constraints))
        assert all(both({"H": v}) == accepted(v) for v in range(1, 1001))


def test_what_torch_assumed_and_python_cannot_say_is_a_warning() -> None:
    import sympy
    from torch.utils._sympy.functions import CeilToInt, IntTrueDiv

    from shapecli.symbolic.fake import Facts
    from shapecli.symbolic.rules import accepted
    from shapecli.symbolic.runs import Outcome

    h = sympy.Symbol("H", integer=True, positive=True)
    facts = Facts({"H": (2, math.inf)}, {}, (sympy.Gt(CeilToInt(IntTrueDiv(h, 3)), 2), h >= 4))
    calls: list[dict[str, int]] = []

    def run(sizes: dict[str, int]) -> Outcome:
        calls.append(sizes)
        return Outcome(ok=sizes["H"] >= 4)

    kept, warnings = accepted(facts, {"H": 64}, run)
    assert [r.text for r in kept] == ["H >= 4"] and calls[-1] == {"H": 3}
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
    report = shapecli.inspect(
        parse_spec(PARALLEL.replace("MERGE", merge), "p.yaml"), input="Bx3xHxW"
    )
    assert report.ok, report.errors
    assert report.rows[1].output_shapes == (shape,)


# -- every printed formula and claim is checked by concrete runs ---------------------------------


def concrete_shapes(source: str, inputs: dict[str, tuple[int, ...]] | tuple[int, ...]) -> Report:
    """The spec run at concrete sizes (one input, or named ones)."""
    given = (
        [f"{n}={'x'.join(map(str, s))}" for n, s in inputs.items()]
        if isinstance(inputs, dict)
        else "x".join(map(str, inputs))
    )
    return shapecli.inspect(parse_spec(source, "s.yaml"), input=given)


def holds_at(report: Report, source: str, sizes: dict[str, int]) -> None:
    """Every size the report derived equals the concrete run's at ``sizes``; and the
    report's claim says whether that run works."""
    shapes = tuple(
        tuple(sizes[d] if isinstance(d, str) else d for d in spec.dims) for spec in report.inputs
    )
    named = {s.name: shape for s, shape in zip(report.inputs, shapes, strict=True) if s.name}
    concrete = concrete_shapes(source, named if named else shapes[0])
    if report.constraints is not None:
        said = all(compile_expression(c)(sizes) for c in report.constraints)
        assert said == concrete.ok, (sizes, report.constraints)
    if not concrete.ok:
        return
    rows = {r.path: r for r in concrete.rows}
    for row in report.rows:
        for mine, theirs in (
            (row.input_shapes, rows[row.path].input_shapes),
            (row.output_shapes, rows[row.path].output_shapes),
        ):
            for shape, real in zip(mine, theirs, strict=True):
                for d, r in zip(evaluate(shape, sizes), real, strict=True):
                    assert d is None or d == r, (row.path, shape, sizes)


UPSAMPLE = """
input: 1x3x32x32
model:
  - LazyConv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - MaxPool2d: 2
  - Upsample: {scale_factor: 2}
  - Conv2d: {in_channels: 8, out_channels: 4, kernel_size: 4, padding: same}
  - ReflectionPad2d: 2
  - Conv2d: {in_channels: 4, out_channels: 4, kernel_size: 3, padding: 2, padding_mode: reflect}
"""


def test_formulas_after_upsampling_and_padding_follow_the_sizes() -> None:
    # torch's C++ kernels read these sizes as numbers: every formula froze to the
    # sample (B×8×H×W → 2×4×32×32); traced again through torch's decompositions
    report = shapecli.inspect(parse_spec(UPSAMPLE, "u.yaml"), input="Bx3xHxW")
    assert report.ok and not [w for w in report.warnings if w.code == "not-derived"]
    assert report.rows[3].output_shapes == (("B", 8, "2*(H//2)", "2*(W//2)"),)
    assert report.rows[-1].output_shapes == (("B", 4, "2*(H//2) + 6", "2*(W//2) + 6"),)
    # reflection padding of 2 needs more than 2: after the pool and the upsampling, H >= 4
    assert report.constraints == ("H >= 4", "W >= 4")
    for sizes in ({"B": 1, "H": 4, "W": 5}, {"B": 3, "H": 33, "W": 64}, {"B": 5, "H": 3, "W": 50}):
        holds_at(report, UPSAMPLE, sizes)


CEIL_POOL = """
input: 1x3x32x32
model:
  - MaxPool2d: {kernel_size: 2, stride: 2, padding: 1, ceil_mode: true}
  - AvgPool2d: {kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}
"""


def test_a_ceil_mode_pool_is_never_given_a_formula_some_sizes_break() -> None:
    # torch's run at an even H gives (H + 1)//2 + 1, wrong for every odd H: derived
    # again at an odd H, the two are joined by the condition torch recorded
    report = shapecli.inspect(parse_spec(CEIL_POOL, "p.yaml"), input="Bx3xHxW")
    assert report.ok
    for h in range(1, 41):
        holds_at(report, CEIL_POOL, {"B": 2, "H": h, "W": h + 3})
    height = report.rows[1].output_shapes[0][2]
    assert height == "(H + 1)//2 + 1 if H % 2 == 0 else (H + 1)//2"


CONV1D = """
input: 1x1x{n}
model:
  - Conv1d: {{in_channels: 1, out_channels: 1, kernel_size: 3, stride: 2}}
  - Conv1d: {{in_channels: 1, out_channels: 1, kernel_size: 3, stride: 2}}
  - Conv1d: {{in_channels: 1, out_channels: 1, kernel_size: 3, stride: 2}}
"""


@pytest.mark.parametrize(
    ("own", "sample"), [(64, None), (16, None), (7, None), (16, 100), (64, 15)]
)
def test_accepted_sizes_do_not_depend_on_the_sample(own: int, sample: int | None) -> None:
    # at N = 7 the model fails: other samples are tried, and the claim is the same
    source = CONV1D.format(n=own)
    samples = {"N": sample} if sample else None
    report = shapecli.inspect(parse_spec(source, "c.yaml"), input="1x1xN", samples=samples)
    assert report.ok and report.constraints == ("N >= 15",)
    assert dict(report.samples)["N"] == (sample or (own if own >= 15 else 64))
    for n in (13, 14, 15, 16, 31, 32, 33):
        holds_at(report, source, {"N": n})


BROADCAST = """
input: {a: 2x8, b: 2x8}
model:
  - Add:
    in: [a, b]
"""


def test_a_broadcasting_add_does_not_claim_equal_sizes() -> None:
    # torch's run at S = T = 8 records S == T; but a size of 1 broadcasts
    report = shapecli.inspect(parse_spec(BROADCAST, "b.yaml"), input=["a=BxS", "b=BxT"])
    assert report.ok and report.constraints != ("T == S",)
    for s, t in ((1, 8), (8, 1), (3, 8), (8, 8), (5, 5)):
        holds_at(report, BROADCAST, {"B": 2, "S": s, "T": t})
    if report.constraints is None:  # and the warning says which run contradicted what
        (note,) = [w for w in report.warnings if w.message.startswith("the sizes the model")]
        assert "the model works, which" in note.message or "fails although" in note.message


def test_a_failed_run_claims_nothing(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write("input: 1x3x8x8\nmodel:\n  - Conv2d: [3, 4, 9]\n")
    result = cli("inspect", str(spec), "-i", "Bx3xHxW", "--sample", "H=5", "--sample", "W=5")
    assert result.exit_code == 1
    assert "accepts" not in result.stdout and "nothing derived" in result.stdout
    assert "with the sample sizes B = 2, H = 5, W = 5" in result.stderr
    doc = cli(
        "inspect", str(spec), "-i", "Bx3xHxW", "--sample", "H=5", "--sample", "W=5", "-f", "json"
    ).json()
    assert doc["ok"] is False and doc["constraints"] is None
    assert doc["samples"] == {"B": 2, "H": 5, "W": 5}


def test_sixteen_symbols_fit_in_the_samples(cli: Cli, write: Callable[..., Path]) -> None:
    # sixteen sizes of 64 overflow int64: an internal error
    spec = write("model:\n  - ReLU\n")
    names = "x".join("ABCDEFGHIJKLMNOP")
    doc = cli("inspect", str(spec), "-i", names, "-f", "json").json()
    assert doc["ok"] and doc["constraints"] == []
    assert doc["layers"][0]["output_shapes"] == [list("ABCDEFGHIJKLMNOP")]
    product = 1
    for value in doc["samples"].values():
        product *= value
    assert product < 2**63


def test_a_mistyped_input_is_an_error(cli: Cli) -> None:
    # `bad` was a 1-D input of a symbolic size `bad`, accepted with exit 0
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "-i", "bad")
    assert result.exit_code == 2 and "error[input-invalid]" in result.stderr
    assert "a symbolic size is a name that starts with a capital letter" in result.stderr


@pytest.mark.slow
def test_sample_chooses_the_first_run(cli: Cli) -> None:
    args = ("inspect", str(CONFIGS / "gpt2.yaml"), "-i", "BxT:long", "-f", "json")
    doc = cli(*args, "--sample", "T=100", "--sample", "B=3").json()
    assert doc["samples"] == {"B": 3, "T": 100} and doc["constraints"] == ["T <= 1024"]
    wrong = cli(*args[:-2], "--sample", "Tx=100")
    assert wrong.exit_code == 2 and "no symbol Tx (did you mean T?)" in wrong.stderr
    assert cli(*args[:-2], "--sample", "T=0").exit_code == 2
    huge = cli(*args[:-2], "--sample", "T=99999999999999999999999")
    assert huge.exit_code == 2 and "more than 2**40 elements" in huge.stderr
    assert cli(*args[:-2], "--sample", "T").exit_code == 2
    concrete = cli("inspect", str(CONFIGS / "mlp.yaml"), "--sample", "B=3")
    assert concrete.exit_code == 2 and "no symbolic sizes" in concrete.stderr


def test_what_is_not_derived_is_null_in_json_and_a_warning(
    cli: Cli, write: Callable[..., Path]
) -> None:
    # torch computes a scale of 1.5 in floating point: printed in its own words before
    spec = write("input: 1x3x8x8\nmodel:\n  - Upsample: {scale_factor: 1.5}\n  - ReLU\n")
    doc = cli("inspect", str(spec), "-i", "Bx3xHxW", "-f", "json").json()
    assert doc["ok"] and doc["constraints"] == []
    assert [row["output_shapes"] for row in doc["layers"]] == [[["B", 3, None, None]]] * 3
    (note,) = doc["warnings"]
    assert note["code"] == "not-derived" and note["severity"] == "warning"
    assert note["path"] == "0" and "TruncToInt(1.5*ToFloat(H))" in note["message"]
    table = cli("inspect", str(spec), "-i", "Bx3xHxW")
    assert table.exit_code == 0 and "B×3×?×?" in table.stdout
    assert "warning[not-derived]" in table.stderr


@pytest.mark.slow
def test_the_budget_ends_a_search_that_exceeds_it(cli: Cli, write: Callable[..., Path]) -> None:
    import time

    # 48 window blocks written out: torch's symbolic run alone takes many seconds
    blocks = "".join("  - window\n" for _ in range(48))
    spec = write(WINDOWS + blocks)
    start = time.monotonic()
    assert cli("inspect", str(spec), "-i", "2x64x64x4", "-f", "json").exit_code == 0
    concrete = time.monotonic() - start  # what the first run costs on this machine now
    start = time.monotonic()
    result = cli("inspect", str(spec), "--symbolic-budget", "0.5", "-f", "json")
    elapsed = time.monotonic() - start
    assert result.exit_code == 0 and elapsed < 2 * concrete + 0.5 + 3, (elapsed, concrete)
    doc = result.json()
    assert doc["ok"] and doc["constraints"] is None
    assert {w["code"] for w in doc["warnings"]} == {"not-derived"}
    assert any(
        "budget" in w["message"] and "--symbolic-budget" in w["hint"] for w in doc["warnings"]
    )
    start = time.monotonic()
    result = cli("lint", str(spec), "-f", "json")  # lint's default budget of 20 s
    assert result.exit_code == 0 and time.monotonic() - start < 2 * concrete + 20 + 5


WINDOWS = """\
input: BxHxWx4
blocks:
  window:
    - Roll: {shifts: [-4, -4], dims: [1, 2]}
      name: shifted
    - WindowPartition: 8
    - Linear: [4, 4]
    - WindowMerge: 8
      in: [_, shifted]
    - Roll: {shifts: [4, 4], dims: [1, 2]}
model:
"""


def test_constraints_are_evaluated_without_eval() -> None:
    from shapecli.symbolic.rules import evaluator

    assert evaluator("__import__('os').getcwd() == 0") is None  # refused, never run
    assert evaluator("TruncToInt(1.5*H) > 2") is None  # torch's words: not the language
    holds = evaluator("(H//4)*(W//4) <= 16 and H % 2 == 0")
    assert holds is not None and holds({"H": 16, "W": 16}) and not holds({"H": 16, "W": 20})
    assert evaluator("H // (W - 1) >= 2") is not None


def test_a_budget_signal_that_is_dropped_fires_again_and_none_after_the_block() -> None:
    """Where Python drops an exception (a gc callback, ``__del__``), the budget's timer
    must fire again; once the block is over, it must not fire at all."""
    import time

    from shapecli.symbolic.runs import Budget, BudgetExhausted

    start = time.monotonic()
    dropped = 0
    with pytest.raises(BudgetExhausted), Budget(0.2).interrupting():
        try:
            while time.monotonic() - start < 5:
                pass
        except BudgetExhausted:
            dropped += 1  # as a gc callback would drop it
        while time.monotonic() - start < 5:
            pass
    assert dropped == 1 and time.monotonic() - start < 2
    time.sleep(0.3)  # a firing after the block would raise here
