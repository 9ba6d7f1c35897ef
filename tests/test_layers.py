"""shapecli's own layers, `auto` sizes for every torch.nn layer, tying and Ref."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import Result
from shapecli.layers.catalog import OWN_LAYERS
from shapecli.layers.own import OWN_MODULES
from shapecli.layers.registry import plain_rst
from shapecli.report import Report, Row
from shapecli.spec.parse import parse_spec

Cli = Callable[..., Result]


def run(body: str, *inputs: str) -> Report:
    return shapecli.inspect(parse_spec("model:\n" + body, "s.yaml"), list(inputs))


def rows(report: Report) -> dict[str, Row]:
    assert report.ok, report.errors
    return {r.path: r for r in report.rows}


def test_catalog_and_modules_name_the_same_layers() -> None:
    assert set(OWN_LAYERS) == set(OWN_MODULES)


@pytest.mark.parametrize(
    ("body", "inputs", "output", "params"),
    [
        ("  - Residual: [{LazyLinear: 8}, ReLU]\n", ["2x8"], (2, 8), 72),
        (
            "  - Residual:\n      body: [{LazyLinear: 16}]\n      shortcut: [{LazyLinear: 16}]\n",
            ["2x8"], (2, 16), 2 * 144,
        ),
        ("  - Parallel: [[{LazyLinear: 3}], [{LazyLinear: 5}]]\n", ["2x8"], (2, 8), 27 + 45),
        ("  - Parallel: {branches: [[{LazyLinear: 3}], [{LazyLinear: 3}]], merge: add}\n", ["2x8"], (2, 3), 54),
        ("  - Parallel: {branches: [[{LazyLinear: 3}], [{LazyLinear: 3}]], merge: mul}\n", ["2x8"], (2, 3), 54),
        ("  - Parallel: {branches: [[ReLU], [Tanh]], merge: stack, dim: 0}\n", ["2x8"], (2, 2, 8), 0),
        ("  - Reshape: [4, -1]\n", ["2x8x3"], (2, 4, 6), 0),
        ("  - Reshape: 24\n", ["2x8x3"], (2, 24), 0),
        ("  - Permute: [0, 2, 1]\n", ["2x8x3"], (2, 3, 8), 0),
        ("  - Transpose: [1, 2]\n", ["2x8x3"], (2, 3, 8), 0),
        ("  - LSTM: {input_size: auto, hidden_size: 6, batch_first: true}\n  - Take: 0\n", ["2x5x4"], (2, 5, 6), 4 * (4 * 6 + 6 * 6 + 12)),
        ("  - Mean: 1\n", ["2x5x4"], (2, 4), 0),
        ("  - Mean: {dim: [1, 2], keepdim: true}\n", ["2x5x4"], (2, 1, 1), 0),
        ("  - Select: {dim: 1, index: 0}\n", ["2x5x4"], (2, 4), 0),
        ("  - ClassToken: auto\n", ["2x5x4"], (2, 6, 4), 4),
        ("  - PositionalEmbedding: [16, 4]\n", ["2x5x4"], (2, 5, 4), 64),
        ("  - Attention: {dim: auto, heads: 4}\n", ["2x5x16"], (2, 5, 16), 4 * (16 * 16 + 16)),
        ("  - Attention: {dim: 32, heads: 8, kv_heads: 2, bias: false, causal: true}\n", ["1x7x32"], (1, 7, 32), 2 * 32 * 32 + 2 * 32 * 8),
        ("  - Attention: {dim: 16, heads: 2, head_dim: 4, bias: false}\n", ["1x7x16"], (1, 7, 16), 4 * 16 * 8),
    ],
)  # fmt: skip
def test_own_layers(body: str, inputs: list[str], output: tuple[int, ...], params: int) -> None:
    report = run(body, *inputs)
    assert report.ok, report.errors
    assert report.rows[0].output_shapes[0] == output
    assert report.totals.params == params


@pytest.mark.parametrize(
    ("body", "inputs", "fragment"),
    [
        ("  - Residual: [{LazyLinear: 3}]\n", ["2x8"], "the body to keep the shape 2×8"),
        ("  - Parallel: {branches: [[{LazyLinear: 3}], [{LazyLinear: 4}]], merge: add}\n", ["2x8"], "broadcast"),
        ("  - Parallel: {branches: [[{LazyLinear: 3}], [Flatten]], merge: cat, dim: 1}\n", ["2x8x2"], "except in dim 1"),
        ("  - Reshape: [5, -1]\n", ["2x8"], "a multiple of 5"),
        ("  - Take: 0\n", ["2x8"], "a tuple"),
        ("  - PositionalEmbedding: [4, 8]\n", ["2x5x8"], "T ≤ 4"),
        ("  - Attention: {dim: 8, heads: 2}\n", ["2x5x16"], "B×T×8"),
        ("  - LayerNorm: auto\n  - Linear: [7, 2]\n", ["2x8"], "last dim 7"),
    ],
)  # fmt: skip
def test_own_layers_explain_what_they_expected(body: str, inputs: list[str], fragment: str) -> None:
    report = run(body, *inputs)
    (error,) = report.errors
    assert error.code == "shape-mismatch"
    assert fragment in (error.expected or "") + error.message


@pytest.mark.parametrize(
    "layer",
    [
        "Mean: 1", "Select: {dim: 1}", "Permute: [0, 2, 1]", "Transpose: [1, 2]",
        "Roll: {shifts: 1, dims: 1}", "Reshape: -1", "ClassToken: 6", "PositionalEmbedding: [8, 6]",
        "WindowPartition: 2", "RelativePositionBias: 2", "WindowMerge: 2\n    in: [_, _]",
    ],
)  # fmt: skip
def test_own_layers_given_a_tuple_ask_for_one_element(layer: str) -> None:
    """A tuple (an LSTM's output) is the spec's mistake, not shapecli's: each layer
    says it wanted a tensor, and the hint names `Take`."""
    report = run(
        f"  - LSTM: {{input_size: 4, hidden_size: 6, batch_first: true}}\n  - {layer}\n", "2x5x4"
    )
    (error,) = report.errors
    assert error.code == "shape-mismatch", error
    assert "a tensor" in (error.expected or "") + error.message and "Take" in (error.hint or "")


@pytest.mark.parametrize(
    ("body", "input_", "params"),
    [
        ("LayerNorm: auto", "2x5x8", 16),
        ("RMSNorm: auto", "2x5x8", 8),
        ("Linear: {in_features: auto, out_features: 3}", "2x8", 27),
        ("Conv2d: {in_channels: auto, out_channels: 4, kernel_size: 3}", "1x3x8x8", 4 * 27 + 4),
        ("BatchNorm2d: auto", "2x6x4x4", 12),
        ("GroupNorm: {num_groups: 2, num_channels: auto}", "2x6x4x4", 12),
        ("LSTM: {input_size: auto, hidden_size: 5}", "7x2x3", 4 * (5 * 3 + 5 * 5 + 10)),
        ("MultiheadAttention: {embed_dim: auto, num_heads: 2}", "5x2x8", 4 * 64 + 3 * 8 + 8),
        ("TransformerEncoderLayer: {d_model: auto, nhead: 2, dim_feedforward: 16, batch_first: true}", "2x5x8", 4 * 72 + 2 * (8 * 16) + 16 + 8 + 4 * 8),
    ],
)  # fmt: skip
def test_auto_input_sizes(body: str, input_: str, params: int) -> None:
    if body.startswith("MultiheadAttention"):  # query, key and value
        report = shapecli.inspect(parse_spec(f"model:\n  {body}\n", "s.yaml"), [input_] * 3)
    else:
        report = run(f"  - {body}\n", input_)
    assert report.ok, report.errors
    assert report.totals.params == params
    entry = next(r for r in reversed(report.rows) if r.entry)
    assert entry.inferred and entry.type == body.split(":", maxsplit=1)[0]


def test_auto_is_refused_for_arguments_that_are_not_input_sizes() -> None:
    report = run("  - Linear: {in_features: 4, out_features: auto}\n", "2x4")
    (error,) = report.errors
    assert error.code == "bad-arguments" and "`out_features` cannot be `auto`" in error.message
    assert error.source is not None and (error.source.line, error.source.column) == (2, 44)


def test_auto_layer_can_be_frozen_and_its_insides_are_recorded() -> None:
    report = run("  - Attention: {dim: auto, heads: 2}\n    trainable: false\n", "2x3x8")
    assert report.totals.trainable == 0 and report.totals.non_trainable == 4 * 72
    q = rows(report)["0.q"]
    assert q.input_shapes == ((2, 3, 8),) and q.status == "ok"


def test_tie_counts_once_and_shows_where() -> None:
    body = (
        "  - Embedding: [10, 4]\n    name: emb\n"
        "  - LazyLinear: {out_features: 10, bias: false}\n    name: head\n    tie: {weight: emb.weight}\n"
    )
    report = run(body, "2x3:long")
    head = rows(report)["head"]
    assert head.params[0].shared_with == "emb.weight" and head.params[0].count == 0
    assert head.param_count == 0
    assert (report.totals.params, report.totals.shared) == (40, 40)


@pytest.mark.parametrize(
    ("tie", "fragment"),
    [
        ("{weight: emb.wieght}", "did you mean `emb.weight`"),
        ("{wieght: emb.weight}", "no parameter `wieght`"),
        ("{weight: nope.weight}", "no parameter `nope.weight`"),
    ],
)
def test_tie_errors(tie: str, fragment: str) -> None:
    body = f"  - Embedding: [10, 4]\n    name: emb\n  - Linear: [4, 10]\n    tie: {tie}\n"
    (error,) = run(body, "2x3:long").errors
    assert error.code == "spec-invalid" and fragment in error.message
    assert error.source is not None and error.source.line == 5


def test_tie_of_different_shapes_is_an_error() -> None:
    body = (
        "  - Embedding: [10, 4]\n    name: emb\n  - Linear: [4, 9]\n    tie: {weight: emb.weight}\n"
    )
    (error,) = run(body, "2x3:long").errors
    assert error.code == "bad-arguments" and "the shapes differ" in error.message


def test_ref_reuses_the_same_module_and_counts_it_once() -> None:
    body = "  - LazyLinear: 8\n    name: shared\n  - ReLU\n  - Ref: shared\n"
    report = run(body, "2x8")
    r = rows(report)
    assert r["2"].type == "Ref → shared" and r["2"].param_count == 0
    assert r["2"].output_shapes == ((2, 8),)
    assert [p.shared_with for p in r["2"].params] == ["shared.weight", "shared.bias"]
    assert (report.totals.params, report.totals.shared) == (72, 72)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("  - Ref: shraed\n  - LazyLinear: 3\n    name: shared\n", "did you mean `shared`"),
        ("  - Sequential: [{Ref: a}]\n    name: a\n", "would call itself"),
    ],
)
def test_ref_errors(body: str, fragment: str) -> None:
    (error,) = run(body, "2x3").errors
    assert error.code == "spec-invalid" and fragment in error.message


def test_ref_may_point_forward() -> None:
    report = run("  - Ref: later\n  - LazyLinear: 4\n    name: later\n", "2x4")
    assert report.ok and report.totals.params == 20


def test_ties_and_refs_survive_building_real_weights(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "input: 2x3:long\nmodel:\n  - Embedding: [10, 4]\n    name: emb\n"
        "  - LazyLinear: 4\n    name: mix\n  - Ref: mix\n"
        "  - LazyLinear: {out_features: 10, bias: false}\n    name: head\n"
        "    tie: {weight: emb.weight}\n"
    )
    model = shapecli.build(spec)
    assert model.head.weight is model.emb.weight
    assert model.get_submodule("2").target is model.mix
    assert sum(p.numel() for p in model.parameters()) == 40 + 20
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 10)


def test_layers_shows_docstrings_as_plain_text(cli: Cli) -> None:
    text = cli("layers", "Cat").stdout
    assert "All inputs concatenated along `dim`." in text and "``" not in text
    (merge,) = cli("layers", "WindowMerge", "-f", "json").json()
    assert merge["summary"].startswith("The inverse of `WindowPartition`: ")
    everything = cli("layers", "-f", "json").json()
    assert not any("``" in d["summary"] or ":class:`" in d["summary"] for d in everything)


@pytest.mark.parametrize(
    ("rst", "plain"),
    [
        ("along ``dim``", "along `dim`"),
        ("probability :attr:`p`.", "probability `p`."),
        ("use :class:`~torch.nn.Linear` or :class:`torch.nn.Conv2d`", "use `Linear` or `torch.nn.Conv2d`"),
        ("See `Huber loss <https://en.wikipedia.org/wiki/Huber_loss>`_ for more", "See Huber loss for more"),
        ("the paper `Fast R-CNN`_ by", "the paper Fast R-CNN by"),
        ("a `Sigmoid` layer", "a `Sigmoid` layer"),
    ],
)  # fmt: skip
def test_plain_rst(rst: str, plain: str) -> None:
    assert plain_rst(rst) == plain


def test_layers_command(cli: Cli) -> None:
    result = cli("layers", "attention")
    assert result.exit_code == 0
    assert "Attention(dim: int | auto, heads: int" in result.stdout
    assert "MultiheadAttention(embed_dim | auto" in result.stdout
    names = [d["name"] for d in cli("layers", "*Norm", "-f", "json").json()]
    assert "LayerNorm" in names and "RMSNorm" in names and "Attention" not in names
    everything = cli("layers", "-f", "json").json()
    assert everything[0]["name"] == "Sequential" and len(everything) > 150
    assert not any(d["name"] in ("ModuleList", "Module") for d in everything)
    none = cli("layers", "Relu6x")
    assert none.exit_code == 1 and "no layer type matches" in none.stderr
