"""The Python API: the same YAML builds the real model for training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import CONFIGS


def test_build_gives_real_initialized_weights_on_the_cpu() -> None:
    model = shapecli.build(CONFIGS / "mlp.yaml", input="2x20", seed=0)
    params = dict(model.named_parameters())
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        "0.weight": (256, 20), "0.bias": (256,), "2.weight": (10, 256), "2.bias": (10,),
    }  # fmt: skip
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in params.values())
    assert params["0.weight"].std() > 0
    out = model(torch.randn(4, 20))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert params["0.weight"].grad is not None


def test_build_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = shapecli.build(CONFIGS / "mlp.yaml", init="xavier_uniform", seed=7)
    assert torch.rand(1) == before
    b = shapecli.build(CONFIGS / "mlp.yaml", init="xavier_uniform", seed=7)
    c = shapecli.build(CONFIGS / "mlp.yaml", init="xavier_uniform", seed=8)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_build_refuses_a_broken_spec_before_allocating() -> None:
    with pytest.raises(shapecli.ShapecliError) as info:
        shapecli.build(CONFIGS / "mismatch.yaml")
    assert info.value.problem.code == "shape-mismatch"
    with pytest.raises(shapecli.ShapecliError, match="unknown init"):
        shapecli.build(CONFIGS / "mlp.yaml", init="magic")


def test_an_error_says_which_file_as_the_cli_does(tmp_path: Path) -> None:
    weights = tmp_path / "plain.yaml"
    weights.write_text("input: 2x20\n", encoding="utf-8")
    with pytest.raises(shapecli.ShapecliError) as info:
        shapecli.build(CONFIGS / "mlp.yaml", weights=weights)
    assert str(info.value) == (
        f"{weights}: error[file-error] is not a safetensors file that can be loaded safely"
    )
    assert info.value.problem.message == "is not a safetensors file that can be loaded safely"
    with pytest.raises(shapecli.ShapecliError) as info:
        shapecli.build(CONFIGS / "mismatch.yaml")
    where = re.escape(str(CONFIGS / "mismatch.yaml"))
    assert re.fullmatch(rf"{where}:\d+:\d+: error\[shape-mismatch\] layer .*", str(info.value))


def test_inspect_never_raises_for_spec_problems(tmp_path: object) -> None:
    report = shapecli.inspect(CONFIGS / "missing.yaml", input="2x3")
    assert not report.ok and report.errors[0].code == "file-error"
    report = shapecli.inspect(CONFIGS / "mlp.yaml", input="2x3x")
    assert report.errors[0].code == "input-invalid"
    report = shapecli.inspect(CONFIGS / "mlp.yaml", set={"nope": 1})
    assert report.errors[0].code == "usage"


def test_the_build_function_is_not_shadowed_by_a_submodule() -> None:
    shapecli.inspect(CONFIGS / "mlp.yaml")  # imports every submodule the dry run needs
    assert callable(shapecli.build) and shapecli.build.__module__ == "shapecli.api"


def test_load_and_inspect_a_spec_object_with_set() -> None:
    spec = shapecli.load(CONFIGS / "mlp.yaml")
    assert spec.name == "mlp" and spec.inputs == (shapecli.InputSpec((2, 20)),)
    report = shapecli.inspect(spec, input=["3x7"])
    assert report.rows[1].params[0].shape == (256, 7)


def test_build_refuses_weights_that_would_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from shapecli import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 10_000)  # bytes
    with pytest.raises(shapecli.ShapecliError) as info:
        shapecli.build(CONFIGS / "mlp.yaml")
    problem = info.value.problem
    assert problem.code == "too-large" and problem.exit_code == 1
    assert "need 31.0 KiB but only 9.8 KiB" in problem.message
