"""The Python API: the same YAML builds the real model for training."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import CONFIGS, Result


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


# -- a model object, a dict, YAML text; the report as text --------------------------------


class _Tied(torch.nn.Module):
    """Two layers sharing one weight, a buffer, and a lazy layer: what a copy must keep."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.full((8,), 2.0))
        self.extra = torch.nn.LazyLinear(3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) * self.scale
        return self.extra(self.head(x))


def test_inspect_takes_a_model_object_and_leaves_its_weights_alone() -> None:
    model = _Tied()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("extra")}
    report = shapecli.inspect(model, "2x5:long")
    assert report.ok, report.errors
    assert report.name == "_Tied" and report.device == "meta"
    rows = {row.path: row for row in report.rows}
    assert rows["head"].output_shapes == ((2, 5, 50),)
    assert rows["extra"].output_shapes == ((2, 5, 3),)
    assert report.totals.params == 50 * 8 + 50 * 3 + 3  # the tied weight counted once
    after = model.state_dict()
    assert all(
        torch.equal(v, after[k]) and after[k].device.type == "cpu" for k, v in before.items()
    )
    assert model.head.weight is model.embed.weight
    assert model.extra.has_uninitialized_params()  # the copy ran the lazy layer, not it


def test_inspect_takes_a_shape_as_a_tuple_and_needs_one() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    assert shapecli.inspect(model, (2, 20)).rows[0].output_shapes == ((2, 10),)
    missing = shapecli.inspect(model)
    assert [p.code for p in missing.errors] == ["input-invalid"]
    assert 'input= in Python (input="2x20")' in missing.errors[0].message


def test_inspect_takes_a_dict_or_yaml_text_as_a_file_is_taken() -> None:
    text = (CONFIGS / "mlp.yaml").read_text()
    from_file = shapecli.inspect(CONFIGS / "mlp.yaml", "2x20")
    from_text = shapecli.inspect(text, "2x20")
    import yaml

    from_dict = shapecli.inspect(yaml.safe_load(text), "2x20")

    def shapes(report: shapecli.Report) -> list[tuple[object, ...]]:
        return [(r.path, r.type, r.output_shapes, r.param_count) for r in report.rows]

    assert shapes(from_text) == shapes(from_dict) == shapes(from_file)
    assert len(from_file.rows) == 4
    broken = shapecli.inspect({"input": "2x4", "model": [{"Linear": [5, 3]}]})
    assert broken.errors[0].code == "shape-mismatch"
    assert str(broken.errors[0].source).startswith("<dict>:")
    unknown = shapecli.inspect("input: 2x4\nmodel:\n  - Linaer: [4, 3]\n")
    assert (
        unknown.errors[0].code == "unknown-layer" and str(unknown.errors[0].source) == "<text>:3:5"
    )


def test_a_report_prints_as_the_table_and_converts_to_json_and_markdown(
    cli: Callable[..., Result],
) -> None:
    report = shapecli.inspect(CONFIGS / "mlp.yaml", "2x20")
    shown = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20")
    assert str(report) + "\n" == shown.stdout
    assert "Total params: 7,946" in str(report) and "Report(" not in str(report)
    assert (
        report.to_json()
        == cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20", "-f", "json").stdout
    )
    assert json.loads(report.to_json())["totals"]["params"] == 7946
    assert (
        report.markdown()
        == cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20", "-f", "markdown").stdout
    )
    failed = shapecli.inspect("input: 2x4\nmodel:\n  - Linear: [5, 3]\n")
    assert "error[shape-mismatch]" in str(failed) and "✗ 0 (Linear)" in str(failed)


def test_inspect_refuses_what_is_not_a_model() -> None:
    report = shapecli.inspect(42, "2x3")  # type: ignore[arg-type]
    assert [p.code for p in report.errors] == ["usage"]
    assert "cannot inspect an object of type int" in report.errors[0].message


def test_symbolic_sizes_for_a_python_model_say_they_are_for_specs() -> None:
    from torch import nn

    report = shapecli.inspect(nn.Linear(3, 4), input="Bx3")
    (error,) = report.errors
    assert error.code == "input-invalid"
    assert "symbolic sizes work for specs only" in error.message and "give B" in error.message


def test_a_problem_prints_as_the_cli_prints_it(cli: Callable[..., Result]) -> None:
    report = shapecli.inspect(CONFIGS / "mismatch.yaml")
    problem = report.errors[0]
    printed = cli("inspect", str(CONFIGS / "mismatch.yaml")).stderr
    assert str(problem).splitlines()[0] == problem.headline
    assert str(problem) in printed
    assert "hint:" in str(problem) and "Problem(" not in str(problem)
