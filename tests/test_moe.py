"""An MoE's experts get the rows the router chooses by value, which a dry run has not: a
size inside an expert that depends on how many rows it gets is not derived (``?``, None),
and so are the FLOPs of its row; every other size, the MoE's own row and the totals stay
exact. Each against a real run on the CPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import shapecli
from conftest import Result
from realtorch import saved_in_training
from shapecli.api import build_file
from shapecli.errors import ShapecliError
from shapecli.report import Report, Row, from_json
from shapecli.spec.parse import parse_spec
from shapecli.verify import verify

Cli = Callable[..., Result]

MLP = """\
input: 2x6x16
model:
  - MoE:
      top_k: 2
      experts:
        - Sequential:
            - Linear: [16, 32]
            - SiLU
            - Linear: [32, 16]
          repeat: 3
"""

#: An expert that moves its rows out of the first dim and back: n×16 → n·32 → n×32.
RESHAPING = """\
input: 1x5x16
model:
  - MoE:
      top_k: 2
      experts:
        - Sequential:
            - Linear: [16, 32]
            - Flatten: {start_dim: 0}
            - Unflatten: {dim: 0, unflattened_size: [-1, 4, 8]}
            - Permute: [1, 2, 0]
            - Permute: [2, 0, 1]
            - Reshape: [32]
            - Linear: [32, 16]
          repeat: 4
"""

#: An MoE whose experts are MoEs.
NESTED = """\
input: 1x7x8
model:
  - MoE:
      top_k: 2
      experts:
        - MoE:
            top_k: 1
            experts:
              - Sequential: [{Linear: [8, 12]}, GELU, {Linear: [12, 8]}]
                repeat: 3
          repeat: 3
"""


def rows_by_path(report: Report) -> dict[str, Row]:
    return {row.path: row for row in report.rows if row.call == 0}


def real_flops(text: str, shape: tuple[int, ...]) -> int:
    model = shapecli.build(parse_spec(text, "moe.yaml")).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(shape))
    return int(counter.get_total_flops())


def test_expert_rows_say_what_routing_decides_is_not_derived() -> None:
    report = shapecli.inspect(parse_spec(MLP, "moe.yaml"), flops=True)
    assert report.ok, report.errors
    rows = rows_by_path(report)
    for copy in ("0", "1", "2"):
        up = rows[f"0.experts.0.{copy}.0"]
        assert (up.input_shapes, up.output_shapes) == (((None, 16),), ((None, 32),))
        assert up.params[0].shape == (32, 16) and up.param_count == 544  # still exact
        assert up.flops is None
        assert rows[f"0.experts.0.{copy}"].flops is None
    moe = rows["0"]
    assert moe.input_shapes == moe.output_shapes == ((2, 6, 16),)
    assert rows["0.router"].output_shapes == ((12, 3),)  # every token is scored
    real = real_flops(MLP, (2, 6, 16))
    assert moe.flops == report.totals.flops == real
    assert report.totals.activation_bytes and report.totals.params == 3264


def test_the_table_and_markdown_show_not_derived_flops_as_a_question_mark(
    cli: Cli, write: Callable[[str], Path]
) -> None:
    path = str(write(MLP))
    table = cli("inspect", path, "--flops", "--depth", "9").stdout
    (line,) = [line for line in table.splitlines() if "weight 32×16" in line][:1]
    assert "?×16" in line and "?×32" in line and line.rstrip().endswith("?")
    assert "8×16" not in table  # the even share is not printed as if it were fact
    markdown = cli("inspect", path, "--flops", "-f", "markdown").stdout
    assert "| ?×16 | ?×16 |   | 1,072 | ? |" in markdown


def test_not_derived_sizes_and_flops_round_trip_through_json() -> None:
    report = shapecli.inspect(parse_spec(MLP, "moe.yaml"), flops=True)
    doc = json.loads(report.to_json())
    (up,) = [r for r in doc["layers"] if r["path"] == "0.experts.0.0.0"]
    assert up["input_shapes"] == [[None, 16]] and up["flops"] is None
    assert from_json(doc) == report


def test_an_expert_that_moves_its_rows_out_of_the_first_dim() -> None:
    report = shapecli.inspect(parse_spec(RESHAPING, "moe.yaml"), flops=True)
    assert report.ok, report.errors
    rows = rows_by_path(report)
    expert = "0.experts.0.0"
    assert rows[f"{expert}.1"].output_shapes == ((None,),)  # n·32
    assert rows[f"{expert}.2"].output_shapes == ((None, 4, 8),)
    assert rows[f"{expert}.3"].output_shapes == ((4, 8, None),)  # the rows are last here
    assert rows[f"{expert}.5"].output_shapes == ((None, 32),)
    assert rows["0"].output_shapes == ((1, 5, 16),)
    assert report.totals.flops == real_flops(RESHAPING, (1, 5, 16))


def test_an_moe_whose_experts_are_moes() -> None:
    report = shapecli.inspect(parse_spec(NESTED, "moe.yaml"), flops=True)
    assert report.ok, report.errors
    rows = rows_by_path(report)
    inner = rows["0.experts.0.0"]
    assert inner.type == "MoE" and inner.input_shapes == ((None, 8),)
    assert rows["0.experts.0.0.router"].output_shapes == ((None, 3),)
    assert rows["0.experts.0.0.experts.0.0.0"].output_shapes == ((None, 12),)
    assert rows["0"].output_shapes == ((1, 7, 8),)
    assert report.totals.flops == real_flops(NESTED, (1, 7, 8))


def test_an_moe_that_sends_every_token_to_every_expert_keeps_its_sizes() -> None:
    """``top_k`` = the number of experts: each expert gets every token, whatever the
    scores, so its rows are exact."""
    text = MLP.replace("top_k: 2", "top_k: 3")
    rows = rows_by_path(shapecli.inspect(parse_spec(text, "moe.yaml"), flops=True))
    assert rows["0.experts.0.1.0"].output_shapes == ((12, 32),)
    assert rows["0.experts.0.1.0"].flops == 2 * 12 * 16 * 32


def test_rows_outside_an_moe_are_untouched() -> None:
    text = MLP.replace("model:\n", "model:\n  - Linear: [16, 16]\n") + "  - Linear: [16, 4]\n"
    rows = rows_by_path(shapecli.inspect(parse_spec(text, "moe.yaml"), flops=True))
    assert rows["0"].output_shapes == ((2, 6, 16),) and rows["0"].flops
    assert rows["2"].output_shapes == ((2, 6, 4),) and rows["2"].flops == 2 * 12 * 16 * 4


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the router chooses by value")
def test_a_symbolic_batch_leaves_the_routed_sizes_not_derived() -> None:
    """The symbolic run deals evenly too: its formula for an expert's rows (``4*B``)
    is proven by runs that deal evenly, and is still not what a router gives."""
    report = shapecli.inspect(parse_spec(MLP, "moe.yaml"), "Bx6x16")
    assert report.ok, report.errors
    rows = rows_by_path(report)
    assert rows["0"].output_shapes == (("B", 6, 16),)
    assert rows["0.router"].output_shapes == (("6*B", 3),)
    assert rows["0.experts.0.0.0"].output_shapes == ((None, 32),)
    assert rows["0.experts.0.2.2"].input_shapes == ((None, 32),)
    assert not [w for w in report.warnings if w.code == "not-derived"]  # nothing contradicted
    assert report.constraints == ()


def test_verify_checks_the_derived_sizes_inside_the_experts(tmp_path: Path) -> None:
    spec = parse_spec(MLP, "moe.yaml")
    built = build_file(spec, tmp_path / "m.safetensors", verify=True)
    assert built.verified_rows == 15  # the experts' rows too, not only the model and MoE
    model = shapecli.build(spec).eval()
    report = shapecli.inspect(spec)
    assert verify(model, report, report.inputs) == 15
    wrong = tuple(
        replace(r, output_shapes=((None, 33),)) if r.path == "0.experts.0.1.0" else r
        for r in report.rows
    )
    with pytest.raises(ShapecliError) as raised:
        verify(model, replace(report, rows=wrong), report.inputs)
    assert raised.value.problem.code == "verify-mismatch"
    assert "?×33" in raised.value.problem.message and "×32" in raised.value.problem.message


#: Experts of different widths: the total cost depends on which expert gets more rows.
UNEQUAL = """\
input: 1x12x16
model:
  - Linear: [16, 16]
  - MoE:
      top_k: 1
      experts:
        - Linear: [16, 16]
        - Sequential: [{Linear: [16, 256]}, {Linear: [256, 16]}]
"""


def test_experts_that_cost_differently_per_row_leave_the_total_flops_not_derived(
    cli: Cli, write: Callable[[str], Path]
) -> None:
    report = shapecli.inspect(parse_spec(UNEQUAL, "moe.yaml"), flops=True)
    assert report.ok, report.errors
    rows = rows_by_path(report)
    assert rows["1"].flops is None and rows[""].flops is None and report.totals.flops is None
    assert rows["0"].flops == 2 * 12 * 16 * 16 and rows["1.router"].flops == 2 * 12 * 16 * 2
    (note,) = [w for w in report.warnings if w.code == "not-derived" and "FLOPs" in w.message]
    assert note.path == "1" and "cost differently per row" in note.message
    model = shapecli.build(parse_spec(UNEQUAL, "moe.yaml")).eval()
    counts = set()
    for seed in range(4):  # what a real run counts depends on the router's choice
        torch.manual_seed(seed)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.randn(1, 12, 16))
        counts.add(counter.get_total_flops())
    assert len(counts) > 1
    table = cli("inspect", str(write(UNEQUAL)), "--flops").stdout
    assert "FLOPs: not derived (see the warnings)" in table
    (line,) = [line for line in table.splitlines() if "(MoE)" in line]
    assert line.rstrip().endswith("?")


def test_experts_alike_keep_the_total_flops_without_a_warning() -> None:
    report = shapecli.inspect(parse_spec(MLP, "moe.yaml"), flops=True)
    assert not [w for w in report.warnings if w.code == "not-derived"]
    assert report.totals.flops == real_flops(MLP, (2, 6, 16))


def test_a_failure_inside_an_expert_claims_no_size_inside_the_moe() -> None:
    """After a failed pass there is no second one (it could size layers the first never
    reached): every size inside the MoE is not derived, the rows before it stay."""
    text = MLP.replace("Linear: [32, 16]", "Linear: [31, 16]")
    report = shapecli.inspect(parse_spec(text, "moe.yaml"))
    (error,) = report.errors
    assert error.code == "shape-mismatch" and error.path == "0.experts.0.0.2"
    rows = rows_by_path(report)
    assert rows["0"].input_shapes == ((2, 6, 16),)
    assert rows["0.experts.0.0.0"].output_shapes == ((None, None),)
    assert rows["0.experts.0.0.2"].input_shapes == ((None, None),)


def _leaf_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes every leaf module returns in one real forward pass."""
    total = 0

    def count(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return total


def test_experts_that_return_different_sizes_leave_activation_memory_not_derived(
    cli: Cli, write: Callable[[str], Path]
) -> None:
    report = shapecli.inspect(parse_spec(UNEQUAL, "moe.yaml"), memory=True)
    assert report.ok, report.errors
    assert report.totals.activation_bytes is None and report.totals.memory is None
    (note,) = [w for w in report.warnings if w.code == "not-derived"]
    assert note.path == "1" and "activation memory and the training estimate" in note.message
    model = shapecli.build(parse_spec(UNEQUAL, "moe.yaml")).eval()
    seen = set()
    for seed in range(4):  # what a real run holds depends on the router's choice
        torch.manual_seed(seed)
        seen.add(_leaf_bytes(model, torch.randn(1, 12, 16)))
    assert len(seen) > 1
    table = cli("inspect", str(write(UNEQUAL)), "--memory").stdout
    assert "activation memory: not derived (see the warnings)" in table
    assert "Training memory" not in table


#: Experts that return the same sizes per row but save different ones for backward.
SAVES_UNEQUALLY = """\
input: 1x12x16
model:
  - Linear: [16, 16]
  - MoE:
      top_k: 1
      experts:
        - Linear: [16, 16]
        - Identity
"""


def test_experts_that_save_different_sizes_leave_the_training_estimate_not_derived() -> None:
    report = shapecli.inspect(parse_spec(SAVES_UNEQUALLY, "moe.yaml"), memory=True)
    assert report.ok, report.errors
    memory = report.totals.memory
    assert memory is not None and memory.forward_activations == report.totals.activation_bytes
    assert memory.saved_for_backward is None and memory.training_peak is None
    (note,) = [w for w in report.warnings if w.code == "training-estimate"]
    assert "not derived" in note.message and "router deals the rows" in note.message
    model = shapecli.build(parse_spec(SAVES_UNEQUALLY, "moe.yaml"))
    seen = set()
    for seed in range(4):
        torch.manual_seed(seed)
        seen.add(saved_in_training(model, [torch.randn(1, 12, 16)])[0])
    assert len(seen) > 1


def test_experts_alike_keep_every_memory_figure() -> None:
    report = shapecli.inspect(parse_spec(MLP, "moe.yaml"), memory=True)
    memory = report.totals.memory
    assert memory is not None and memory.saved_for_backward is not None
    assert not [w for w in report.warnings if w.code in ("not-derived", "training-estimate")]
    model = shapecli.build(parse_spec(MLP, "moe.yaml"))
    torch.manual_seed(0)
    assert memory.saved_for_backward == saved_in_training(model, [torch.randn(2, 6, 16)])[0]


def test_a_failure_inside_an_expert_says_its_row_counts_are_the_even_share() -> None:
    text = MLP.replace("Linear: [32, 16]", "Linear: [31, 16]")
    (error,) = shapecli.inspect(parse_spec(text, "moe.yaml")).errors
    assert any("even share" in note and "layer 0 (MoE)" in note for note in error.notes)
    assert error.input_shapes == ((None, None),)  # not derived, as the rows inside are
    outside = shapecli.inspect(parse_spec(MLP + "  - Linear: [17, 4]\n", "moe.yaml"))
    (error,) = outside.errors
    assert error.path == "1" and not any("even share" in note for note in error.notes)
