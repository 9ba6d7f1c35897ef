"""Repeat copies replicate their first copy instead of running: same report, fewer ops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import CONFIGS
from shapecli.construct import build_modules
from shapecli.dryrun import dry_run
from shapecli.report import Report
from shapecli.spec.parse import parse_spec, read_spec

TRICKY = """
input: 2x6x8
blocks:
  block:
    - Residual:
        - LayerNorm: auto
        - Attention: {dim: auto, heads: 2}
    - LazyLinear: 8
      name: proj
    - LazyLinear: 8
      tie: {weight: stack.0.proj.weight}
    - Ref: shared
model:
  - LazyLinear: 8
    name: shared
  - block:
    name: stack
    repeat: 4
  - Mean: 1
  - LazyLinear: 3
    repeat: 2
"""


def report(path_or_text: Path | str, replay: bool) -> tuple[Report, nn.Module]:
    spec = (
        read_spec(path_or_text)
        if isinstance(path_or_text, Path)
        else parse_spec(path_or_text, "t.yaml")
    )
    built = build_modules(spec)
    return dry_run(built, spec.inputs, spec.name, spec.file, replay=replay), built.model


@pytest.mark.slow
@pytest.mark.parametrize(
    "source",
    [CONFIGS / "gpt2.yaml", CONFIGS / "llama-tiny.yaml", CONFIGS / "resnet18.yaml", TRICKY],
    ids=["gpt2", "llama-tiny", "resnet18", "tricky"],
)
def test_replay_gives_the_same_report_as_running_every_copy(source: Path | str) -> None:
    replayed, _ = report(source, replay=True)
    full, _ = report(source, replay=False)
    assert replayed.ok and full.ok, (replayed.errors, full.errors)
    assert replayed == full


def test_replayed_copies_have_their_own_parameters_and_hooks() -> None:
    _, model = report(TRICKY, replay=True)
    stack = model.get_submodule("stack")
    copies = list(stack.children())
    for name in ("0.body.0.weight", "0.body.1.q.weight", "proj.weight", "proj.bias", "2.bias"):
        assert len({id(c.get_parameter(name)) for c in copies}) == 4, name  # independent copies
    assert all(
        c.get_submodule("2").weight is copies[0].get_submodule("proj").weight for c in copies
    )  # the tie holds
    assert copies[1].get_submodule("0.body.1") is not copies[0].get_submodule("0.body.1")
    assert (
        copies[1].get_submodule("0.body.1")._forward_hooks
        is not copies[0].get_submodule("0.body.1")._forward_hooks
    )
    assert "forward" not in vars(copies[1])  # the replaying forward is gone


def test_a_copy_fed_a_different_shape_runs_for_real() -> None:
    text = "input: 2x8\nmodel:\n  - LazyLinear: 4\n    repeat: 3\n"  # 8 → 4 → 4 → 4
    replayed, _ = report(text, replay=True)
    full, _ = report(text, replay=False)
    assert replayed == full
    rows = {r.path: r for r in replayed.rows}
    assert rows["0.1"].same_as is None and rows["0.2"].same_as is None  # compared with copy 0
    assert [rows[f"0.{i}"].params[0].shape for i in range(3)] == [(4, 8), (4, 4), (4, 4)]


@pytest.mark.parametrize(
    "tensor",
    [
        torch.empty(2, 3, 4, device="meta"),
        torch.empty(2, 3, 1, 1, device="meta").to(memory_format=torch.channels_last),
        torch.empty(2, 3, 5, 5, device="meta").to(memory_format=torch.channels_last),
        torch.empty(3, 0, 2, device="meta"),
        torch.empty(2, 3, device="meta").t(),
        nn.Parameter(torch.empty(4, 4, device="meta")),
    ],
)
def test_replicas_are_made_like_torch_makes_them(tensor: torch.Tensor) -> None:
    from shapecli.replay import empty_like

    made, torchs = empty_like(tensor), torch.empty_like(tensor)
    assert (made.shape, made.stride(), made.dtype) == (torchs.shape, torchs.stride(), torchs.dtype)
