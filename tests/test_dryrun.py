"""Build on meta and dry-run: what the first forward pass teaches, and how a failure
is explained."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from shapecli.construct import BuiltModel, build_modules
from shapecli.dryrun import dry_run
from shapecli.errors import ShapecliError
from shapecli.inputs import InputSpec, parse_input
from shapecli.report import Report
from shapecli.spec.parse import parse_spec

MLP = "model:\n  - LazyLinear: 256\n  - ReLU\n  - LazyLinear: 10\n"


def run(text: str, *inputs: str) -> Report:
    spec = parse_spec(text, "s.yaml")
    built = build_modules(spec)
    return dry_run(built, [parse_input(i) for i in inputs], spec.name, spec.file)


def test_lazy_weights_are_uninitialized_until_the_dry_run() -> None:
    built = build_modules(parse_spec(MLP, "s.yaml"))
    weights = list(built.model.parameters())
    assert all(isinstance(p, UninitializedParameter) for p in weights)
    assert built.lazy == {"0", "2"}
    report = dry_run(built, [InputSpec((2, 20))], "mlp", "s.yaml")
    assert report.ok
    params = dict(built.model.named_parameters())
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        "0.weight": (256, 20), "0.bias": (256,), "2.weight": (10, 256), "2.bias": (10,),
    }  # fmt: skip
    assert all(p.device.type == "meta" for p in params.values())


def test_rows_record_shapes_params_and_counts() -> None:
    report = run(MLP, "2x20")
    rows = {r.path: r for r in report.rows}
    assert rows[""].input_shapes == ((2, 20),) and rows[""].output_shapes == ((2, 10),)
    assert rows["0"].output_shapes == ((2, 256),)
    assert [(p.name, p.shape, p.count) for p in rows["0"].params] == [
        ("weight", (256, 20), 5120), ("bias", (256,), 256),
    ]  # fmt: skip
    assert rows["0"].inferred and not rows["1"].inferred
    assert report.totals.params == 7946 == rows[""].param_count
    assert report.totals.param_bytes == 7946 * 4
    assert report.totals.activation_bytes == (2 * 256 + 2 * 256 + 2 * 10) * 4


@pytest.mark.parametrize("text", [MLP, "model:\n  - Linear: [3, 4]\n"], ids=["ok", "failing"])
def test_hooks_are_removed_and_modes_restored(text: str) -> None:
    from torch.nn.modules import module as torch_module

    built = build_modules(parse_spec(text, "s.yaml"))
    built.model.train()
    dry_run(built, [InputSpec((2, 20))], "m", "s.yaml")
    assert built.model.training and all(m.training for m in built.model.modules())
    for module in built.model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks


def test_mismatch_names_layer_line_shape_expectation_producer_and_hint() -> None:
    report = run("model:\n  - LazyLinear: 256\n  - ReLU\n  - Linear: [30, 10]\n", "2x20")
    assert not report.ok
    (error,) = report.errors
    assert error.code == "shape-mismatch"
    assert error.path == "2" and error.layer_type == "Linear"
    assert error.source is not None and (error.source.line, error.source.column) == (4, 5)
    assert error.input_shapes == ((2, 256),)
    assert error.expected == "last dim 30 (in_features)"
    assert error.produced_by == "0 (LazyLinear), passed on unchanged by 1 (ReLU)"
    assert error.hint is not None and "LazyLinear" in error.hint and "auto" in error.hint
    assert error.detail is not None and error.detail.startswith("RuntimeError")
    status = {r.path: r.status for r in report.rows}
    assert status == {"": "failed", "0": "ok", "1": "ok", "2": "failed"}


@pytest.mark.parametrize(
    ("text", "inputs", "expected"),
    [
        ("  - Conv2d: [3, 8, 3]\n", ["1x4x8x8"], "C = 3 (in_channels)"),
        ("  - BatchNorm2d: 3\n", ["1x4x8x8"], "dim 1 = 3 (num_features)"),
        ("  - LayerNorm: 8\n", ["2x4"], "trailing dims 8 (normalized_shape)"),
        ("  - Embedding: [10, 4]\n", ["1x8"], "integer token ids"),
        ("  - Conv2d: [3, 8, 5]\n", ["1x3x2x2"], "spatial size"),
    ],
)
def test_expectations_per_layer_kind(text: str, inputs: list[str], expected: str) -> None:
    report = run("model:\n" + text, *inputs)
    assert expected in (report.errors[0].expected or "")
    assert (
        report.errors[0].produced_by is not None and "model input" in report.errors[0].produced_by
    )


def test_failure_inside_a_torch_layer_is_reported_on_the_entry() -> None:
    text = "model:\n  - TransformerEncoderLayer: {d_model: 16, nhead: 2, batch_first: true}\n"
    report = run(text, "2x5x8")
    (error,) = report.errors
    assert error.path == "0" and error.layer_type == "TransformerEncoderLayer"
    assert error.source is not None and error.source.line == 2


def test_failure_inside_a_block_names_the_use_site() -> None:
    text = "blocks:\n  b: [ReLU, {Linear: [3, 4]}]\nmodel:\n  - b\n"
    (error,) = run(text, "2x5").errors
    assert error.path == "0.1" and error.source is not None and error.source.line == 2
    assert any("block `b` used at s.yaml:4:5" in n for n in error.notes)


def test_build_errors() -> None:
    with pytest.raises(ShapecliError) as info:
        build_modules(parse_spec("model:\n  - Relu\n", "s.yaml"))
    assert info.value.problem.code == "unknown-layer"
    assert "did you mean `ReLU`" in info.value.problem.message
    with pytest.raises(ShapecliError) as info:
        build_modules(parse_spec("model:\n  - MultiheadAttention: [10, 3]\n", "s.yaml"))
    problem = info.value.problem
    assert problem.code == "bad-arguments" and problem.detail and "divisible" in problem.detail


def test_repeat_builds_fresh_copies() -> None:
    report = run("model:\n  - LazyLinear: 4\n    repeat: 3\n", "2x4")
    rows = {r.path: r for r in report.rows}
    assert (rows["0"].type, rows["0"].repeat) == ("LazyLinear", 3)  # the count in its own field
    assert [rows[f"0.{i}"].param_count for i in range(3)] == [20, 20, 20]
    assert report.totals.params == 60 and report.totals.shared == 0


def test_trainable_false_freezes() -> None:
    report = run("model:\n  - LazyLinear: 4\n    trainable: false\n  - LazyLinear: 2\n", "1x4")
    assert (report.totals.trainable, report.totals.non_trainable) == (10, 20)


class _SkipsALayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.LazyLinear(3, device="meta")
        self.unused = nn.LazyLinear(3, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)  # type: ignore[no-any-return]


def test_uninitialized_parameter_after_a_successful_run_is_reported() -> None:
    built = BuiltModel(_SkipsALayer(), lazy={"used", "unused"})
    report = dry_run(built, [InputSpec((2, 20))], "m", "s.yaml")
    assert [(e.code, e.path) for e in report.errors] == [("uninitialized", "unused")]
    assert not report.totals.complete


def test_nothing_is_allocated() -> None:
    report = run("model:\n  - LazyLinear: 100000\n  - LazyLinear: 100000\n", "1x100000")
    assert report.totals.params == 20_000_200_000  # 80 GB of float32, on meta
    assert torch.empty(0).device.type == "cpu"  # the default device is untouched


def test_missing_arguments_name_only_the_missing_ones() -> None:
    with pytest.raises(ShapecliError) as info:
        build_modules(parse_spec("model:\n  - Conv2d: [3]\n", "s.yaml"))
    problem = info.value.problem
    assert problem.message == "Conv2d: missing required argument(s): out_channels, kernel_size"
    assert problem.hint is not None and problem.hint.startswith("takes Conv2d(in_channels: int,")


@pytest.mark.parametrize(
    ("entry", "shape", "refused"),
    [
        ("Linear: [5, 7]", "2x5:bfloat16", True),
        ("Linear: [5, 7]", "2x5:float64", True),
        ("Conv2d: [3, 4, 3]", "1x3x8x8:float16", True),
        ("ConvTranspose2d: [3, 4, 3]", "1x3x8x8:float16", True),
        ("LSTM: [5, 4]", "2x3x5:bfloat16", True),
        ("LayerNorm: 5", "2x5:bfloat16", False),  # norms take a half input, float weights
        ("GroupNorm: [1, 5]", "2x5:bfloat16", False),
        ("Linear: [5, 7]", "2x5", False),
    ],
)
def test_an_input_dtype_that_is_not_the_weights_is_refused_as_torch_refuses_it(
    entry: str, shape: str, refused: bool
) -> None:
    """Meta kernels do not check dtypes; the CPU's do. The dry run says what the CPU
    says, checked here against a real forward pass of the same layer."""
    import shapecli

    spec = f"model:\n  - {entry}\n"
    report = shapecli.inspect(spec, input=shape)
    given = parse_input(shape)
    model = shapecli.build(spec, input="x".join(map(str, given.dims)), seed=0)  # float32
    x = torch.ones(given.dims, dtype=getattr(torch, given.dtype))
    with pytest.raises((RuntimeError, ValueError)) if refused else contextlib.nullcontext():
        model(x)
    assert report.ok is not refused, report.errors
    if refused:
        (error,) = report.errors
        assert "its weights float32" in error.message
        assert f"--dtype {given.dtype}" in (error.hint or "")
