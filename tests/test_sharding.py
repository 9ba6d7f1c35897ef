"""``--shard``: each device's training memory, divided as each scheme divides it.

The division is checked against DeepSpeed's published estimators (their formulas,
transcribed below from ``deepspeed/runtime/zero/stage_1_and_2.py`` and ``stage3.py``),
against torch's ``torch.chunk`` (how FSDP2 cuts a parameter), and through the command
line and JSON. ``tests/test_distributed.py`` measures the fsdp figures in two processes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import CONFIGS, ROOT, Result
from shapecli.analyses.sharding import Held, Shard, divide, parse_shard
from shapecli.errors import ShapecliError
from shapecli.report import Memory, read_report

Cli = Callable[..., Result]


# -- DeepSpeed's estimators -------------------------------------------------------------------


def deepspeed_zero2_gpu_bytes(total_params: int, total_gpus: int) -> int:
    """``estimate_zero2_model_states_mem_needs(..., cpu_offload=False)``'s GPU bytes:
    "2 = params_16bit, 18 = 2_grads_16bit + 4_grads_32bit + 4_params_32bit +
    8_optimizer_states_32bit(momentum and variance)"."""
    return 2 * total_params + int(18 * total_params / total_gpus)


def deepspeed_zero3_gpu_bytes(total_params: int, largest_layer_params: int, gpus: int) -> int:
    """``estimate_zero3_model_states_mem_needs(..., cpu_offload=False)``'s GPU bytes:
    ``largest_layer_memory = 4 * largest_layer_params`` (its 16-bit weights gathered and
    their 16-bit gradients) plus 18 bytes per parameter over the GPUs."""
    return 4 * largest_layer_params + int(18 * total_params / gpus)


def model_states(device: Memory | None) -> int:
    assert device is not None and device.gradients is not None
    return device.params + device.gradients + (device.optimizer_state or 0)


#: A 16-bit model as DeepSpeed's estimators see it: layers of parameters, Adam.
LAYERS: tuple[Held, ...] = tuple(((rows, 64), 2) for rows in (512, 256, 256, 128))
PSI = sum(math.prod(shape) for shape, _ in LAYERS)
LARGEST = max(math.prod(shape) for shape, _ in LAYERS)


def per_device(scheme: str, devices: int, optimizer: str = "adam") -> Memory:
    whole = Memory(params=2 * PSI, gradients=2 * PSI, optimizer=optimizer, optimizer_state=0)
    shard = Shard(scheme, devices)  # type: ignore[arg-type]
    return divide(shard, whole, LAYERS, LAYERS, LAYERS)  # type: ignore[return-value]


@pytest.mark.parametrize("gpus", [1, 2, 8, 64])
def test_zero2_is_deepspeeds_estimate(gpus: int) -> None:
    assert model_states(per_device("zero2", gpus)) == deepspeed_zero2_gpu_bytes(PSI, gpus)


@pytest.mark.parametrize("gpus", [1, 2, 8, 64])
def test_zero3_is_deepspeeds_estimate_but_for_what_it_does_not_count_alike(gpus: int) -> None:
    """Two differences, both named: DeepSpeed's ZeRO-3 estimate adds the largest layer
    gathered whole (4 bytes a parameter), which shapecli does not model and says so;
    and it counts the same 18 bytes per parameter ÷ N as at stage 2, whose breakdown
    has no 16-bit weights, which stage 3 partitions too: shapecli counts them, 2 bytes
    ÷ N."""
    ours = model_states(per_device("zero3", gpus))
    gathered, partitioned_weights = 4 * LARGEST, 2 * PSI // gpus
    assert ours + gathered - partitioned_weights == deepspeed_zero3_gpu_bytes(PSI, LARGEST, gpus)


def test_zero1_divides_only_the_optimizer_state() -> None:
    one, eight = per_device("zero1", 1), per_device("zero1", 8)
    assert eight.params == one.params == 2 * PSI
    assert eight.gradients == 2 * PSI + 4 * PSI // 8  # whole, and the step's 32-bit part
    assert eight.optimizer_state == 12 * PSI // 8  # 32-bit weights, momentum, variance


@pytest.mark.parametrize(("optimizer", "per_parameter"), [("sgd-momentum", 8), ("sgd", 4)])
def test_zero_keeps_32_bit_weights_for_every_optimizer(optimizer: str, per_parameter: int) -> None:
    assert per_device("zero2", 4, optimizer).optimizer_state == per_parameter * PSI // 4


def test_zero_stages_1_and_2_pad_the_concatenation_to_2n_elements() -> None:
    """DeepSpeed aligns the flat buffer to ``nccl_start_alignment_factor`` (2) × N."""
    odd: tuple[Held, ...] = (((7,), 4),)
    whole = Memory(params=28, gradients=28, optimizer="adam", optimizer_state=0)
    device = divide(Shard("zero2", 3), whole, odd, odd, odd)
    assert device.optimizer_state == 12 * 4  # ⌈7 / 6⌉ × 2 = 4 elements, 12 bytes each


# -- FSDP2: each parameter cut on its first dimension -----------------------------------------


@pytest.mark.parametrize("devices", [1, 2, 3, 8, 200])
def test_fsdp_holds_the_first_devices_chunk_of_every_parameter(devices: int) -> None:
    """torch.chunk's first piece, the largest: FSDP2 pads every device's shard to it."""
    shapes = [(99, 32), (32,), (), (1, 5), (7, 3, 2)]
    params: tuple[Held, ...] = tuple((s, 4) for s in shapes)
    whole = Memory(params=4 * sum(map(math.prod, shapes)), optimizer="adamw", optimizer_state=0)
    device = divide(Shard("fsdp", devices), whole, params, params, params)
    first = [torch.empty(s).reshape(s or (1,)).chunk(devices)[0].numel() for s in shapes]
    assert device.params == device.gradients == 4 * sum(first)
    assert device.optimizer_state == 2 * 4 * sum(first) + 4 * len(shapes)  # + each step


def test_fsdp_over_one_device_is_the_whole_estimate() -> None:
    report = shapecli.inspect(CONFIGS / "lenet5.yaml", "2x1x32x32", shard="fsdp=1")
    memory = report.totals.memory
    assert memory is not None and memory.per_device is not None
    figures = ("params", "buffers", "gradients", "optimizer_state", "saved_for_backward")
    assert all(getattr(memory.per_device, f) == getattr(memory, f) for f in figures)
    assert memory.per_device.training_peak == memory.training_peak


def test_only_what_the_loss_reaches_gets_gradients_and_state() -> None:
    """A frozen layer's weights are sharded too; it gets no gradient nor state."""
    text = "input: 2x8\nmodel:\n  - Linear: [8, 8]\n    trainable: false\n  - Linear: [8, 4]\n"
    from shapecli.spec.parse import parse_spec

    report = shapecli.inspect(parse_spec(text, "s.yaml"), shard="fsdp=2", optimizer="sgd")
    assert report.totals.memory is not None
    device = report.totals.memory.per_device
    assert device is not None
    assert device.params == 4 * (4 * 8 + 4 + 2 * 8 + 2)
    assert device.gradients == 4 * (2 * 8 + 2)


# -- the option --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zero=2", "name the stage and the number of devices, e.g. zero2=8"),
        ("fsdb=8", "(did you mean `fsdp`?)"),
        ("fsdp", "write SCHEME=DEVICES"),
        ("fsdp=0", "the number of devices is from 1 to 1,000,000"),
        ("fsdp=-2", "write SCHEME=DEVICES"),
        ("zero4=2", "the scheme one of fsdp, zero1, zero2, zero3"),
    ],
)
def test_a_bad_shard_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(ShapecliError, match=re.escape(message)):
        parse_shard(text)


DOCS = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
DOCS_COMMANDS = [
    body
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOCS, re.S)
    if not lang and body.startswith("$ shapecli ")
]


@pytest.mark.parametrize("example", DOCS_COMMANDS, ids=[c.splitlines()[0] for c in DOCS_COMMANDS])
def test_the_docs_command_examples_print_what_they_show(
    example: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_readme import matches

    monkeypatch.chdir(ROOT)
    command, *shown = example.rstrip("\n").splitlines()
    result = cli(*command.split()[2:])
    assert result.exit_code == 0
    assert matches(shown, result.stdout.rstrip("\n").splitlines()), result.stdout


def test_the_footer_and_json_say_each_devices_figures(cli: Cli, tmp_path: Path) -> None:
    args = ("inspect", str(CONFIGS / "llama-tiny.yaml"), "--shard", "zero3=8")
    table = cli(*args).stdout
    assert "Training memory, estimated (adam):" in table  # --shard implies --memory
    line = next(x for x in table.splitlines() if x.startswith("Training memory per device"))
    assert line.startswith("Training memory per device, zero3=8 (DeepSpeed ZeRO stage 3 over 8")
    assert "  not modelled: the parameters and gradients of the layer that computes" in table
    result = cli(*args, "-f", "json")
    assert result.exit_code == 0
    memory = result.json()["totals"]["memory"]
    device = memory["per_device"]
    assert device["shard"] == "zero3=8"
    assert set(device) == set(memory) - {"per_device"} | {"shard"}
    assert device["saved_for_backward"] == memory["saved_for_backward"]
    saved = tmp_path / "report.json"
    saved.write_text(result.stdout, encoding="utf-8")
    assert read_report(saved.read_text()).totals.memory == read_report(result.stdout).totals.memory
    assert json.loads(result.stdout)["totals"]["memory"]["per_device"]["training_peak"] > 0


def test_without_shard_there_is_no_per_device_figure(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--memory", "-f", "json")
    assert result.json()["totals"]["memory"]["per_device"] is None
    assert "per device" not in cli("inspect", str(CONFIGS / "mlp.yaml"), "--memory").stdout


@pytest.mark.process
def test_a_bad_shard_exits_2_before_torch_is_imported(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--shard", "zero=3")
    assert result.exit_code == 2
    assert "error[usage] --shard zero=3: name the stage" in result.stderr
    import subprocess
    import sys

    code = (
        "import sys; from shapecli.cli import run_cli; "
        "run_cli(['inspect', 'configs/mlp.yaml', '--shard', 'x=1']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=CONFIGS.parent,
        check=False,
    ).stdout
    assert out.strip().endswith("False")


def test_symbolic_sizes_refuse_shard(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "Bx20", "--shard", "fsdp=2")
    assert result.exit_code == 2
    assert "--shard" in result.stderr and "need concrete sizes" in result.stderr


def test_the_refusal_names_each_symbolic_size_once(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "two.yaml"
    spec.write_text("input: [BxT, BxT]\nmodel:\n  - Add\n")
    result = cli("inspect", str(spec), "--flops")
    assert result.exit_code == 2
    assert "give numbers for B, T" in result.stderr
    assert "B, T, B" not in result.stderr
