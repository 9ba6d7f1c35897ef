"""FLOPs and memory: figures computed by hand, tied weights once, the training estimate
against a real CPU step, and the shortcuts changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import CONFIGS, Result
from shapecli.analyses import Flops, Training
from shapecli.construct import build_modules
from shapecli.dryrun import dry_run
from shapecli.inputs import parse_input
from shapecli.report import to_json
from shapecli.spec.parse import parse_spec, read_spec

Cli = Callable[..., Result]


@pytest.mark.slow
def test_mlp_flops_by_hand() -> None:
    report = shapecli.inspect(CONFIGS / "mlp.yaml", flops=True)
    # 2 × (2·20·256) + 2 × (2·256·10): two matrix products, 2 FLOPs per multiply-add
    assert report.totals.flops == 2 * (2 * 20 * 256) + 2 * (2 * 256 * 10) == 30_720
    assert [r.flops for r in report.rows] == [30_720, 20_480, 0, 10_240]


def test_lenet5_flops_by_hand() -> None:
    report = shapecli.inspect(CONFIGS / "lenet5.yaml", flops=True)
    conv1 = 2 * 6 * 28 * 28 * (1 * 5 * 5)
    conv2 = 2 * 16 * 10 * 10 * (6 * 5 * 5)
    fc = 2 * (400 * 120 + 120 * 84 + 84 * 10)
    assert report.totals.flops == conv1 + conv2 + fc == 833_040


def test_attention_flops_include_the_scores_and_the_weighted_sum() -> None:
    spec = parse_spec(
        "input: 1x16x32\nmodel:\n  - Attention: {dim: 32, heads: 4, bias: false}\n", "a.yaml"
    )
    report = shapecli.inspect(spec, flops=True)
    projections = 4 * 2 * 16 * 32 * 32  # q, k, v, o
    scores = 2 * 4 * 16 * 16 * 8  # QKᵀ: heads × Tq × Tk × head_dim
    weighted = 2 * 4 * 16 * 16 * 8  # AV
    assert report.totals.flops == projections + scores + weighted == 163_840


@pytest.mark.slow
def test_mlp_saved_for_backward_by_hand() -> None:
    report = shapecli.inspect(CONFIGS / "mlp.yaml", memory=True)
    memory = report.totals.memory
    assert memory is not None
    # the input 2×20 (for the first weight's gradient) and the ReLU output 2×256 (for
    # ReLU's and the second weight's), float32; parameters are counted elsewhere
    assert memory.saved_for_backward == (2 * 20 + 2 * 256) * 4 == 2_208
    assert memory.gradients == memory.params == 7_946 * 4
    # Adam: two float32 states per parameter, and a float32 step count per tensor
    assert memory.optimizer_state == 2 * 4 * 7_946 + 4 * 4
    assert memory.training_peak == memory.params + memory.gradients + 2 * 4 * 7_946 + 16 + 2_208


@pytest.mark.slow
def test_tied_weights_are_counted_once_in_memory() -> None:
    memory = shapecli.inspect(CONFIGS / "gpt2.yaml", memory=True).totals.memory
    assert memory is not None
    assert memory.params == memory.gradients == 124_439_808 * 4  # the head is wte


@pytest.mark.parametrize(
    ("optimizer", "states", "steps"),
    [("sgd", 0, 0), ("sgd-momentum", 1, 0), ("adamw", 2, 4), ("none", 0, 0)],
)
def test_optimizer_state(optimizer: str, states: int, steps: int) -> None:
    memory = shapecli.inspect(CONFIGS / "mlp.yaml", memory=True, optimizer=optimizer).totals.memory
    assert memory is not None and memory.optimizer_state == states * 4 * 7_946 + steps * 4


def test_bfloat16_halves_the_parameter_memory() -> None:
    full = shapecli.inspect(CONFIGS / "lenet5.yaml")
    half = shapecli.inspect(CONFIGS / "lenet5.yaml", dtype="bfloat16", memory=True)
    assert half.ok and half.totals.param_dtype == "bfloat16"
    assert half.totals.param_bytes * 2 == full.totals.param_bytes
    assert half.totals.activation_bytes * 2 == full.totals.activation_bytes
    assert torch.get_default_dtype() == torch.float32  # left as it was


def test_a_model_that_cannot_train_at_this_batch_gets_a_warning_not_an_error() -> None:
    spec = parse_spec("input: 1x8\nmodel:\n  - LazyLinear: 4\n  - LazyBatchNorm1d\n", "b.yaml")
    report = shapecli.inspect(spec, memory=True)
    assert report.ok
    assert report.totals.memory is not None and report.totals.memory.training_peak is None
    (warning,) = report.warnings
    assert warning.code == "training-estimate" and "Expected more than 1 value" in warning.message
    # at the entry that failed, which is what a user has to find
    assert "in train mode layer 1 (LazyBatchNorm1d) failed: ValueError" in warning.message
    assert warning.source is not None and (warning.source.line, warning.source.column) == (4, 5)
    assert warning.path == "1"


def test_a_train_mode_failure_in_a_block_is_at_the_entry_inside_it(
    cli: Callable[..., Result], write: Callable[..., Path]
) -> None:
    spec = write(
        "blocks:\n  norm:\n    body:\n      - ReLU\n      - LazyBatchNorm2d\n"
        "input: 1x3x1x1\nmodel:\n  - LazyConv2d: {out_channels: 4, kernel_size: 1}\n"
        "  - norm:\n    name: n\n"
    )
    result = cli("inspect", str(spec), "--memory")
    assert result.exit_code == 0
    assert (
        f"{spec}:5:9: warning[training-estimate] the training estimate is missing: in train "
        in result.stderr
    )
    assert "mode layer n.1 (LazyBatchNorm2d) failed" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "shape"), [("gpt2", None), ("llama-tiny", None), ("lstm-classifier", "2x12:long")]
)
def test_flops_and_memory_are_the_same_with_and_without_the_shortcuts(
    config: str, shape: str | None
) -> None:
    spec = read_spec(CONFIGS / f"{config}.yaml")
    inputs = [parse_input(shape)] if shape else spec.inputs
    measure = (Flops(), Training())

    def report(fast: bool) -> object:
        built = build_modules(spec)
        return to_json(
            dry_run(
                built, inputs, spec.name, spec.file, replay=fast, shortcuts=fast, measure=measure
            )
        )

    assert report(True) == report(False)


def test_a_small_flop_count_is_written_once(cli: Cli, write: Callable[..., Path]) -> None:
    table = cli("inspect", str(write("input: 1x3\nmodel:\n  - Linear: [3, 4]\n")), "--flops").stdout
    assert "FLOPs: 24 in one forward pass" in table  # not "24 (24)"


def test_the_cli_shows_flops_and_training_memory(cli: Cli) -> None:
    table = cli("inspect", str(CONFIGS / "mlp.yaml"), "--flops", "--memory").stdout
    assert "FLOPs" in table.splitlines()[1]
    assert "FLOPs: 30,720 (30.7 K) in one forward pass (2 × multiply-adds" in table
    assert "Training memory, estimated (adam):" in table and "saved for backward 2.2 KiB" in table
    markdown = cli("inspect", str(CONFIGS / "mlp.yaml"), "--flops", "-f", "markdown").stdout
    assert "| FLOPs |" in markdown and "FLOPs: 30,720" in markdown
    doc = cli(
        "inspect", str(CONFIGS / "mlp.yaml"), "--memory", "--optimizer", "sgd", "-f", "json"
    ).json()
    assert (
        doc["totals"]["memory"]["optimizer"] == "sgd"
        and doc["totals"]["memory"]["optimizer_state"] == 0
    )
    assert doc["totals"]["flops"] is None  # not asked for
    bad = cli("inspect", str(CONFIGS / "mlp.yaml"), "--dtype", "int8")
    assert bad.exit_code == 2 and "--dtype int8" in bad.stderr


def test_lint_counts_flops_per_file(cli: Cli, tmp_path: Path) -> None:
    import shutil

    for name in ("mlp.yaml", "lenet5.yaml"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    doc = cli("lint", str(tmp_path), "--flops", "-f", "json").json()
    assert {Path(f["file"]).name: f["totals"]["flops"] for f in doc["files"]} == {
        "lenet5.yaml": 833_040,
        "mlp.yaml": 30_720,
    }


@pytest.mark.slow
@pytest.mark.parametrize("config", ["llama2-70b", "llama-tiny", "gpt2", "t5-small"])
def test_the_rows_a_table_shows_add_up_collapsed_copies_included(config: str) -> None:
    """A collapsed row (``1…79 (decoder ×79, as 0)``) stands for every copy: its FLOPs
    and its count are the copies' totals, so each shown row's children add up to it."""
    from shapecli.render.tree import visible_rows

    report = shapecli.inspect(CONFIGS / f"{config}.yaml", flops=True)
    shown = visible_rows(report, None)
    assert any("×" in row.type for row, _ in shown)  # a collapsed run is there
    for i, (parent, level) in enumerate(shown):
        children = []
        for row, depth in shown[i + 1 :]:
            if depth <= level:
                break
            if depth == level + 1:
                children.append(row)
        if children:
            assert sum(r.flops or 0 for r in children) == parent.flops, parent.path
            assert sum(r.param_count for r in children) == parent.param_count, parent.path
    root = shown[0][0]
    assert root.flops == report.totals.flops and root.param_count == report.totals.params


@pytest.mark.slow
def test_a_collapsed_row_shows_the_flops_of_all_its_copies(cli: Cli) -> None:
    table = cli("inspect", str(CONFIGS / "llama2-70b.yaml"), "--flops").stdout
    (row,) = [line for line in table.splitlines() if "(decoder ×79, as 0)" in line]
    assert row.split()[-1] == f"{79 * 7_559_142_440_960:,}" == "597,172,252,835,840"
