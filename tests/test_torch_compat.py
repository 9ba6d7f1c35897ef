"""shapecli on every torch it supports: the same reports, its touchpoints on, others refused.

Every test here is marked ``compat``: CI runs them on the oldest and the newest supported
torch as well as on the pinned one (``.ci/run``), with ``tests/test_speedups.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import shapecli
from conftest import CONFIGS, GOLDEN, ROOT, Result
from shapecli import torch_compat
from shapecli.report import Report
from shapecli.torch_compat import SUPPORTED, Releases, shape_env, touchpoints

pytestmark = pytest.mark.compat

#: The torch the golden files were recorded on (``.ci/run``'s TORCH_PINNED).
PINNED = "2.13.0"

Cli = Callable[..., Result]


#: The training figures, which another torch may leave not derived (its kernels keep
#: other tensors than the estimate models: an older oneDNN's LSTM workspace).
TRAINING = ("gradients", "optimizer", "optimizer_state", "saved_for_backward", "per_device")


def summary(report: Report) -> str:
    """One line of what shapecli derived for a spec, but for the training estimate: the
    totals (FLOPs included), the problems' codes and paths, and a digest of every row's
    shapes, parameters and FLOPs. torch's own wording (a mismatch's detail) is left out:
    it differs between releases, and is not shapecli's claim."""
    rows = [
        [r.path, r.type, r.input_shapes, r.output_shapes, r.param_count, r.flops, r.status]
        for r in report.rows
    ]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    problems = [
        f"{p.code}@{p.path}"
        for p in (*report.errors, *report.warnings)
        if p.code != "training-estimate"
    ]
    totals = {k: v for k, v in asdict(report.totals).items() if v is not None}
    for key in TRAINING:
        totals.get("memory", {}).pop(key, None)
    return f"{report.name}: {json.dumps(totals, sort_keys=True)} {problems} rows {digest}"


def training(report: Report) -> str:
    """The training estimate's figures for a spec, or why there are none."""
    memory = report.totals.memory
    figures = {key: getattr(memory, key) for key in TRAINING} if memory else {}
    if memory is None or memory.saved_for_backward is None:
        unestimated = [p.message for p in report.warnings if p.code == "training-estimate"]
        figures = {"not derived": len(unestimated) == 1}
    return f"{report.name}: {json.dumps(figures, sort_keys=True)}"


@pytest.mark.slow
def test_every_shipped_config_reports_what_the_pinned_torch_reports(
    golden: Callable[[str, str], None],
) -> None:
    """Every figure as on the pinned torch. Another torch may leave a training estimate
    not derived — saying so in one warning — but never gives a different number."""
    reports = [shapecli.inspect(p, flops=True, memory=True) for p in sorted(CONFIGS.glob("*.yaml"))]
    golden("configs.txt", "".join(summary(r) + "\n" for r in reports))
    lines = [training(r) for r in reports]
    if torch_compat.installed_torch().partition("+")[0] != PINNED:
        recorded = (GOLDEN / "training.txt").read_text().splitlines()
        said = [f"{r.name}: " + json.dumps({"not derived": True}) for r in reports]
        lines = [
            old if new == not_ours else new
            for new, old, not_ours in zip(lines, recorded, said, strict=True)
        ]
    golden("training.txt", "".join(line + "\n" for line in lines))


def test_every_touchpoint_is_on_where_it_was_tested() -> None:
    installed = torch_compat.installed_torch()
    found = touchpoints()
    assert found, "no touchpoints"
    for name, touchpoint in found.items():
        assert touchpoint.tested.first >= SUPPORTED.first, name  # none reaches below
        if installed in touchpoint.tested:
            assert touchpoint.active(), f"{name}'s self-check fails on torch {installed}"


@pytest.fixture
def all_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every touchpoint switched off, as on a torch none of them was tested on."""
    for touchpoint in touchpoints().values():
        monkeypatch.setattr(touchpoint, "_active", False)
    yield


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "options"),
    [("lstm-classifier", {"flops": True, "memory": True}), ("gpt2", {"flops": True})],
)
def test_with_every_touchpoint_off_the_report_is_the_same(
    config: str, options: dict[str, bool], request: pytest.FixtureRequest
) -> None:
    on = shapecli.inspect(CONFIGS / f"{config}.yaml", **options)
    request.getfixturevalue("all_off")
    off = shapecli.inspect(CONFIGS / f"{config}.yaml", **options)
    # the same figures; a warning may place itself less exactly (no frame names)
    assert replace(off, warnings=()) == replace(on, warnings=())
    assert [w.code for w in off.warnings] == [w.code for w in on.warnings]


def test_with_frames_off_a_failure_is_still_reported_and_never_blames_another_layer(
    all_off: None,
) -> None:
    (error,) = shapecli.inspect(CONFIGS / "mismatch.yaml").errors
    assert error.code == "shape-mismatch"
    assert error.path in ("", "2")  # the model, or the layer that failed: never another


@pytest.mark.parametrize("version", ["2.5.1", "2.15.0", "1.13.1+cpu", "3.0.0a0+git1234"])
def test_a_torch_outside_the_range_is_refused_before_the_dry_run(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str
) -> None:
    monkeypatch.setattr(torch, "__version__", version)
    expected = f"shapecli supports torch {SUPPORTED}, and torch {version} is installed"
    for args in (
        ["inspect", str(CONFIGS / "mlp.yaml")],
        ["build", str(CONFIGS / "mlp.yaml"), "-o", str(tmp_path / "w.safetensors")],
        ["diff", str(CONFIGS / "mlp.yaml"), str(CONFIGS / "lenet5.yaml")],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert f"error[unsupported-torch] {expected}" in result.stderr, args
    assert not (tmp_path / "w.safetensors").exists()
    doc = cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json").json()
    assert [e["code"] for e in doc["errors"]] == ["unsupported-torch"]
    lint = cli("lint", str(CONFIGS))
    assert lint.exit_code == 2 and lint.stderr.count("unsupported-torch") == 1, lint.stderr


def test_a_yaml_error_is_reported_as_such_on_any_torch(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, write: Callable[..., Path]
) -> None:
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    result = cli("inspect", str(write("model: [\n")))
    assert result.exit_code == 1 and "yaml-syntax" in result.stderr


def test_every_supported_version_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for minor in range(SUPPORTED.first[1], SUPPORTED.last[1] + 1):
        monkeypatch.setattr(torch, "__version__", f"2.{minor}.1+cu124")
        torch_compat.require_supported()


def test_symbolic_sizes_are_derived_or_refused_as_their_touchpoint_says(cli: Cli) -> None:
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "Bx20")
    if shape_env.TOUCHPOINT.active():
        assert result.exit_code == 0 and "B×10" in result.stdout, result.stderr
    else:
        assert result.exit_code == 2, result.stderr
        needs = f"symbolic sizes need torch {shape_env.TOUCHPOINT.tested}"
        assert f"error[unsupported-torch] {needs}" in result.stderr


def test_symbolic_sizes_off_are_refused_and_concrete_ones_still_run(
    cli: Cli, all_off: None
) -> None:
    refused = cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "Bx20")
    assert refused.exit_code == 2 and "unsupported-torch" in refused.stderr
    assert cli("inspect", str(CONFIGS / "mlp.yaml"), "--input", "2x20").exit_code == 0


def test_a_torch_that_refuses_the_hooks_is_an_internal_error_not_the_models(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As torch 2.4 did: its global forward hooks took no keyword arguments."""
    from shapecli import record

    def refuses(*args: object, **kwargs: object) -> None:
        raise TypeError("register_module_forward_hook() got an unexpected keyword argument")

    monkeypatch.setattr(record, "register_module_forward_hook", refuses)
    result = cli("inspect", str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 3 and "internal error" in result.stderr, result.stderr
    assert "shape-mismatch" not in result.stderr
    from torch.nn.modules import module

    assert not module._global_forward_pre_hooks  # what was registered is removed


def test_pyproject_and_ci_state_the_supported_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    torch_requirement = [d for d in project["project"]["dependencies"] if d.startswith("torch")]
    assert torch_requirement == [SUPPORTED.requirement()]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    tested = {
        name: torch_compat.minor_release(version)
        for name, version in re.findall(r"^(TORCH_\w+)=(\S+)", ci, re.M)
    }
    assert tested["TORCH_OLDEST"] == SUPPORTED.first and tested["TORCH_NEWEST"] == SUPPORTED.last
    assert f"TORCH_PINNED={PINNED}\n" in ci  # the golden files' torch
    assert torch_compat.installed_torch() in SUPPORTED  # whichever of them runs this


def test_releases_compare_by_minor_release() -> None:
    supported = Releases((2, 6), (2, 14))
    assert "2.6.0" in supported and "2.14.1+cpu" in supported and "2.10.0a0+git" in supported
    assert "2.5.1" not in supported and "2.15.0" not in supported and "nonsense" not in supported
    assert str(supported) == "2.6 to 2.14" and supported.requirement() == "torch>=2.6,<2.15"


def _global_hooks() -> dict[str, dict[int, object]]:
    """Every table of global module hooks torch keeps, copied."""
    from torch.nn.modules import module

    tables = {name: getattr(module, name) for name in dir(module) if name.startswith("_global_")}
    return {name: dict(table) for name, table in tables.items() if isinstance(table, dict)}


@pytest.mark.parametrize("options", [{}, {"flops": True, "memory": True}])
def test_a_dry_run_leaves_no_global_hook_behind(options: dict[str, bool]) -> None:
    """A flag left in ``_global_forward_hooks_with_kwargs`` makes a later
    ``torch.compile`` in the user's process warn of global hooks that are gone."""
    before = _global_hooks()
    assert shapecli.inspect(CONFIGS / "lstm-classifier.yaml", **options).ok
    assert _global_hooks() == before
