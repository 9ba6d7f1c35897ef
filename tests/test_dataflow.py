"""Format 2: named tensors — `in:`, `_`, `output:`, blocks with inputs, `if:`, named
model inputs, list params, the graph ops — and every mistake found before a dry run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import Result
from shapecli.errors import ShapecliError
from shapecli.report import Origin, Report, Row
from shapecli.spec.parse import parse_spec

Cli = Callable[..., Result]

MINI_BERT = """
input:
  ids: 2x16:long
  types: 2x16:long
  mask: 2x16:bool
params: {d: 32, heads: 4, layers: 3, pooler: true}
blocks:
  encoder_layer:
    params: {heads: 4}
    inputs: [x, mask]
    body:
      - Attention: {dim: auto, heads: "${heads}"}
        in: {x: x, mask: mask}
        name: attn
      - Add:
        in: [x, attn]
      - LayerNorm: auto
        name: h
      - LazyLinear: "${d * 4}"
      - GELU
      - LazyLinear: "${d}"
      - Add:
        in: [h, _]
      - LayerNorm: auto
model:
  - Embedding: [100, "${d}"]
    in: ids
    name: tok
  - Embedding: [2, "${d}"]
    in: types
    name: seg
  - Add:
    in: [tok, seg]
  - LayerNorm: auto
  - encoder_layer: {heads: "${heads}"}
    in: [_, mask]
    repeat: "${layers}"
    name: encoder
  - Select: {dim: 1, index: 0}
    if: "${pooler}"
  - LazyLinear: "${d}"
    if: "${pooler}"
    name: pooled
output: [encoder, pooled]
"""


def inspect(text: str, *inputs: str, **overrides: object) -> Report:
    return shapecli.inspect(parse_spec(text, "g.yaml", overrides), list(inputs) or None)


def rows(report: Report) -> dict[str, Row]:
    assert report.ok, report.errors
    return {r.path: r for r in report.rows}


def problem(text: str, **overrides: object) -> tuple[str, int, str]:
    """The first problem of a spec that fails to parse or build: code, line, message."""
    report = inspect(text, **overrides)
    assert not report.ok, "expected a problem"
    first = report.errors[0]
    return first.code, first.source.line if first.source else 0, first.message


# -- what flows where -----------------------------------------------------------------------


def test_a_small_bert_runs_with_named_inputs_and_a_tuple_output() -> None:
    report = inspect(MINI_BERT)
    by_path = rows(report)
    assert by_path[""].input_shapes == ((2, 16), (2, 16), (2, 16))
    assert by_path[""].output_shapes == ((2, 16, 32), (2, 32))  # (encoder, pooled)
    assert by_path["2"].input_shapes == ((2, 16, 32), (2, 16, 32))
    assert by_path["encoder.0.attn"].input_shapes == ((2, 16, 32), (2, 16))  # x and mask
    assert [i.name for i in report.inputs] == ["ids", "types", "mask"]


def test_sources_say_where_every_input_came_from() -> None:
    by_path = rows(inspect(MINI_BERT))
    assert by_path["tok"].sources == (Origin(input="ids"),)
    assert by_path["2"].sources == (Origin(path="tok"), Origin(path="seg"))
    assert by_path["encoder"].sources == (Origin(path="3"), Origin(input="mask"))
    # copy i reads copy i-1's output and the same mask
    assert by_path["encoder.1"].sources == (Origin(path="encoder.0"), Origin(input="mask"))
    # inside the block: the block's inputs are what its use received
    assert by_path["encoder.0.attn"].sources == (
        Origin(path="3", arg="x"),
        Origin(input="mask", arg="mask"),
    )
    assert by_path["encoder.0.h"].sources == (Origin(path="encoder.0.1"),)


def test_version_1_rows_get_sources_too() -> None:
    text = "input: 2x8\nmodel:\n  - LazyLinear: 4\n  - Residual: [{LazyLinear: 4}]\n"
    by_path = rows(inspect(text))
    assert by_path["0"].sources == (Origin(input="input"),)
    assert by_path["1"].sources == (Origin(path="0"),)
    assert by_path["1.body.0"].sources == (Origin(path="0"),)  # the list's input


def test_if_drops_entries_and_output_leaves_them_out() -> None:
    report = inspect(MINI_BERT, pooler=False)
    by_path = rows(report)
    assert "pooled" not in by_path and "5" not in by_path
    assert by_path[""].output_shapes == ((2, 16, 32),)  # just the sequence, not a 1-tuple
    text = "input: 2x4\nparams: {layers: 3}\nmodel:\n  - ReLU:\n    if: ${layers > 6}\n  - Tanh\n"
    assert [r.type for r in rows(inspect(text)).values()] == ["Sequential", "Tanh"]


def test_nested_lists_read_the_names_around_them() -> None:
    text = """
input: {x: 2x8, skip: 2x4}
model:
  - LazyLinear: 4
    in: x
    name: a
  - Residual:
      - LazyLinear: 4
      - Add:
        in: [_, skip]      # a model input, read from inside the residual's body
  - - Mul:
      in: [_, a]           # an entry of the enclosing list
"""
    by_path = rows(inspect(text))
    assert by_path["1.body.1"].sources == (Origin(path="1.body.0"), Origin(input="skip"))
    assert by_path["2.0"].input_shapes == ((2, 4), (2, 4))


def test_a_repeated_block_with_several_inputs_replays_like_a_full_run() -> None:
    from shapecli.construct import build_modules
    from shapecli.dryrun import dry_run
    from shapecli.report import to_json

    spec = parse_spec(MINI_BERT, "g.yaml")

    def report(replay: bool) -> object:
        built = build_modules(spec)
        return to_json(dry_run(built, spec.inputs, spec.name, spec.file, replay=replay))

    assert report(True) == report(False)


def test_graph_ops() -> None:
    text = """
input: {a: 2x3x4, b: 4x5, c: 1x3x1}
model:
  - MatMul:
    in: [a, b]
    name: ab
  - Mul:
    in: [_, c]              # broadcasting
  - Cat: 2
    in: [ab, _]
  - Stack: 0
    in: [_, _]
  - Param: {shape: [7], init: zeros}
    name: p
  - Add:
    in: [p, p]
output: [ab, 3, 5]
"""
    by_path = rows(inspect(text))
    assert by_path[""].output_shapes == ((2, 3, 5), (2, 2, 3, 10), (7,))
    assert by_path["p"].input_shapes == () and by_path["p"].params[0].shape == (7,)


def test_attention_reads_context_mask_and_bias() -> None:
    text = """
input: {x: 2x5x16, memory: 2x9x24, mask: 2x9:bool, bias: 4x5x9}
model:
  - Attention: {dim: 16, heads: 4, context_dim: 24}
    in: {x: x, context: memory, mask: mask, bias: bias}
  - Attention: {dim: 16, heads: 4, fused_qkv: true, causal: true}
"""
    by_path = rows(inspect(text))
    assert by_path["0"].output_shapes == ((2, 5, 16),)
    assert [p.shape for p in by_path["0"].params] == []  # q, k, v, o are its children
    assert by_path["0.k"].params[0].shape == (16, 24)
    assert by_path["1.qkv"].params[0].shape == (48, 16)


def test_scaled_dot_product_with_grouped_keys_and_a_padding_mask() -> None:
    text = """
input: {q: 2x5x32, kv: 2x7x16, mask: 2x7:bool}
model:
  - ScaledDotProduct: {heads: 4}
    in: {q: q, k: kv, v: kv, mask: mask}
"""
    assert rows(inspect(text))[""].output_shapes == ((2, 5, 32),)  # 2 key heads serve 4


def test_list_params_and_set_lists() -> None:
    text = "input: 1x3x16x16\nparams: {kernel: [1, 7]}\nmodel:\n  - LazyConv2d: {out_channels: 4, kernel_size: '${kernel}'}\n"
    assert rows(inspect(text))[""].output_shapes == ((1, 4, 16, 10),)
    assert rows(inspect(text, kernel="[3, 3]"))[""].output_shapes == ((1, 4, 14, 14),)


# -- a real forward pass agrees ------------------------------------------------------------


@pytest.mark.slow
def test_the_built_model_runs_for_real_with_the_same_shapes() -> None:
    model = shapecli.build(parse_spec(MINI_BERT, "g.yaml"), seed=0)
    ids = torch.randint(0, 100, (2, 16))
    types = torch.randint(0, 2, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 10:] = False  # padding
    sequence, pooled = model(ids, types, mask)
    assert sequence.shape == (2, 16, 32) and pooled.shape == (2, 32)
    assert torch.isfinite(sequence).all()
    # a padded key changes nothing for the first sequence, and is really masked out
    changed = ids.clone()
    changed[1, 12] = (changed[1, 12] + 1) % 100
    again, _ = model(changed, types, mask)
    assert torch.allclose(again[1, :10], sequence[1, :10], atol=1e-5)


# -- mistakes, each located, before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("input: {x: 2x4}\nmodel:\n  - ReLU:\n    in: y\n", 4, "no tensor named `y` here"),
        ("input: {x: 2x4}\nmodel:\n  - ReLU:\n    in: xx\n", 4, "(did you mean `x`?)"),
        (
            "input: {x: 2x4}\nmodel:\n  - ReLU:\n    in: later\n  - Tanh:\n    name: later\n",
            4,
            "`later` is used before it is defined (at line 5)",
        ),
        (
            "input: {x: 2x4}\nmodel:\n  - ReLU:\n    if: false\n    name: r\n  - Tanh:\n    in: r\n",
            7,
            "`r` is dropped by its `if:` (line 4)",
        ),
        ("input: {x: 2x4}\nmodel:\n  - ReLU:\n    name: x\n", 3, "`x` is defined twice"),
        ("input: {x: 2x4}\nmodel:\n  - ReLU\noutput: nope\n", 4, "no tensor named `nope`"),
        (
            "blocks:\n  b:\n    inputs: [x, m]\n    body: [ReLU]\ninput: 2x4\nmodel:\n  - b\n",
            7,
            "block `b` takes 2 inputs (x, m); as the first entry it gets this list's 1 input",
        ),
        (
            "blocks:\n  b:\n    inputs: [x, x]\n    body: [ReLU]\nmodel: [b]\n",
            3,
            "two inputs named `x`",
        ),
        ("shapecli: 1\nmodel:\n  - ReLU:\n    in: _\n", 4, "needs format version 2"),
        ("input: 2x4\nmodel:\n  - ReLU:\n    if: 3\n", 4, "`if` is true or false"),
        ("model:\n  ReLU:\n  in: _\n", 3, "`in:` is for entries of a layer list"),
        (
            "input: 2x4\nmodel:\n  - ReLU\n  - Tanh\n  - b\nblocks:\n  b:\n    inputs: [x, m]\n    body: [ReLU]\n",
            5,
            "without `in:` it gets just the previous output",
        ),
    ],
)
def test_name_mistakes_are_located(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ShapecliError) as info:
        parse_spec(text, "g.yaml")
    first = info.value.problem
    assert first.code == "spec-invalid"
    assert first.source is not None and first.source.line == line, first
    assert fragment in first.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("  - MultiheadAttention: [8, 2]\n    in: {querry: x, key: x, value: x}\n", "(did you mean `query`?)"),
        ("  - ReLU:\n    in: [x, x]\n", "takes at most 1 tensor"),
        ("  - MultiheadAttention: [8, 2]\n    in: [x]\n", "also needs `key`, `value`"),
    ],
)  # fmt: skip
def test_in_must_fit_the_layers_forward(body: str, fragment: str) -> None:
    code, line, message = problem("input: {x: 2x3x8}\nmodel:\n" + body)
    assert code == "bad-arguments" and line == 4 and fragment in message


def test_an_input_nothing_reads_is_a_warning() -> None:
    report = inspect("input: {x: 2x4, unused: 2x4}\nmodel:\n  - ReLU:\n    in: x\n")
    assert report.ok
    (warning,) = report.warnings
    assert warning.code == "unused-input" and "`unused`" in warning.message
    # a first entry without `in:` reads every input of its list: nothing is unused
    for spec in (
        "input: {x: 2x20}\nmodel:\n  - LazyLinear: 5\n",
        "input: {x: 2x4, y: 2x4}\nmodel:\n  - Add\n",
        "input: {x: 2x4}\nmodel:\n  - Residual: [ReLU]\n",
    ):
        assert inspect(spec).warnings == (), spec


def test_a_ref_to_a_list_that_reads_outer_names() -> None:
    """A nested list reads the names around it while they exist: through a Ref called
    while the enclosing list runs it works; called from elsewhere it is a clear error."""
    text = """
input: {x: 2x4}
model:
  - Sequential:
      - ReLU:
        name: a
      - Sequential:
          - Add:
            in: [_, %s]
        name: inner
    name: outer
  - Ref: outer.inner
"""
    assert inspect(text % "x").ok  # reads the model input: the root list is running
    (error,) = inspect(text % "a").errors  # `a` lives in `outer`, which is not running
    assert error.path == "1" and "is read from a list that is not running" in error.message


# -- named inputs on the command line -----------------------------------------------------------


@pytest.mark.slow
def test_named_inputs_from_the_command_line(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(MINI_BERT)
    given = ("-i", "mask=2x8:bool", "-i", "2x8:long", "-i", "2x8:long")
    doc = cli("inspect", str(spec), "-f", "json", *given).json()
    assert [i["name"] for i in doc["inputs"]] == ["ids", "types", "mask"]
    assert [i["shape"] for i in doc["inputs"]] == [[2, 8], [2, 8], [2, 8]]
    only = cli("inspect", str(spec), "-f", "json", "-i", "ids=2x16:long").json()
    assert [i["shape"] for i in only["inputs"]] == [[2, 16], [2, 16], [2, 16]]  # by name
    # a few shapes in order would leave the rest as declared: out of step, so refused
    result = cli("inspect", str(spec), "-i", "2x8:long")
    assert result.exit_code == 2, result.stderr
    assert "no shape for types, mask" in result.stderr and "--input ids=2x8:int64" in result.stderr
    result = cli("inspect", str(spec), "-i", "mask2=2x16:bool")
    assert result.exit_code == 2 and "no input `mask2` (did you mean `mask`?)" in result.stderr
    result = cli("inspect", str(spec), *["-i", "2x8:long"] * 4)
    assert result.exit_code == 2 and "reads 3 inputs (ids, types, mask)" in result.stderr
    result = cli("inspect", str(spec), "-i", "2x8:long", "-i", "ids=2x8:long")
    assert result.exit_code == 2 and "given twice" in result.stderr
    table = cli("inspect", str(spec)).stdout
    assert table.splitlines()[0] == "spec · inputs ids 2x16:int64, types 2x16:int64, mask 2x16:bool"
