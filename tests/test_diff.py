"""shapecli diff, and Python models as input: is the spec the network it copies, and
what did a change do?"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS, Result
from shapecli.diff import diff
from shapecli.report import from_json, to_json

Cli = Callable[..., Result]
MODELS = Path(__file__).parent / "pymodels"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tests/pymodels on the path, as PYTHONPATH would put a user's package."""
    import sys

    monkeypatch.syspath_prepend(str(MODELS))
    yield
    for name in [n for n in sys.modules if n.startswith("shapecli_models")]:
        del sys.modules[name]


ALLOW = ("--allow-import", "shapecli_models")


def test_a_python_model_is_inspected_on_meta() -> None:
    report = shapecli.inspect("shapecli_models:Named", "2x20", allow_import=["shapecli_models"])
    assert report.ok and report.totals.params == 7_946
    assert [r.path for r in report.rows] == ["", "fc1", "act", "fc2"]
    assert report.rows[1].output_shapes == ((2, 256),)
    # where each layer's input came from, traced in the pass (no spec says it)
    assert [[o.path or o.input for o in r.sources] for r in report.rows] == [
        ["input"], ["input"], ["fc1"], ["act"],
    ]  # fmt: skip
    reused = shapecli.inspect("shapecli_models:Reused", "2x20", allow_import=["shapecli_models"])
    # one module called twice: a row per call, each with its own source
    acts = [r for r in reused.rows if r.path == "act"]
    assert [(r.call, [o.path for o in r.sources]) for r in acts] == [(0, ["fc1"]), (1, ["fc2"])]


@pytest.mark.parametrize(
    ("target", "allow", "code", "says"),
    [
        ("shapecli_models:mlp", None, 1, "run with `--allow-import shapecli_models`"),
        ("shapecli_models:broken", "shapecli_models", 1, "RuntimeError: no GPU found"),
        ("shapecli_models:not_a_module", "shapecli_models", 1, "returned a int, not an nn.Module"),
        ("shapecli_models:missing", "shapecli_models", 1, "has no `missing`"),
        ("shapecli_models:mlpp", "shapecli_models", 1, "has no `mlpp` (did you mean `mlp`?)"),
        ("shapecli_models:Named.forwad", "shapecli_models", 1, "(did you mean `Named.forward`"),
        (
            "shapecli_models:mlp",
            "shapecli",
            1,
            "--allow-import shapecli_models",
        ),  # a prefix is not it
    ],
)
def test_python_models_fail_clearly(
    cli: Cli, target: str, allow: str | None, code: int, says: str
) -> None:
    args = ["--allow-import", allow] if allow else []
    result = cli("inspect", target, "-i", "2x20", *args)
    assert result.exit_code == code and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_diff_suggests_the_factory_meant(cli: Cli) -> None:
    result = cli("diff", "shapecli_models:Nammed", str(CONFIGS / "mlp.yaml"), *ALLOW)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "`shapecli_models` has no `Nammed` (did you mean `Named`?)" in result.stderr


def test_the_spec_is_the_network_it_copies(cli: Cli) -> None:
    result = cli("diff", str(CONFIGS / "mlp.yaml"), "shapecli_models:Named", *ALLOW, "--exit-code")
    assert result.exit_code == 0, result.stdout + result.stderr  # fc1 pairs with 0, fc2 with 2
    assert "no differences in shapes or counts" in result.stdout


def test_alignment_by_structure_when_names_differ() -> None:
    spec = shapecli.inspect(CONFIGS / "mlp.yaml")
    named = shapecli.inspect("shapecli_models:Named", "2x20", allow_import=["shapecli_models"])
    deeper = shapecli.inspect("shapecli_models:Deeper", "2x20", allow_import=["shapecli_models"])
    same = diff(spec, named)
    assert [(c.status, c.a and c.a.path, c.b and c.b.path) for c in same.changes] == [
        ("same", "0", "fc1"), ("same", "1", "act"), ("same", "2", "fc2"),
    ]  # fmt: skip
    assert not same.differs
    grown = diff(named, deeper)
    assert [c.status for c in grown.changes] == ["same", "same", "same", "added"]
    assert grown.changes[-1].b is not None and grown.changes[-1].b.path == "out"
    assert grown.differs and grown.changes[-1].delta == 33


def test_what_a_python_model_cannot_show_is_unseen(cli: Cli, tmp_path: Path) -> None:
    """A function is not a layer of a module tree: against a Python model, a
    parameter-free layer on the spec side only does not decide. (A module called twice
    has a row per call, so both ReLUs pair.)"""
    spec = tmp_path / "reused.yaml"
    spec.write_text(
        "input: 2x20\nmodel:\n  - LazyLinear: [256]\n  - ReLU\n  - LazyLinear: [64]\n  - ReLU\n"
        "  - Flatten\n  - LazyLinear: [10]\n"
    )
    result = cli("diff", str(spec), "shapecli_models:Reused", *ALLOW, "--exit-code", "-f", "json")
    assert result.exit_code == 0, result.stdout
    doc = result.json()
    assert doc["summary"] | {"param_delta": 0} == {
        "same": 5, "changed": 0, "added": 0, "removed": 0, "unseen": 1, "param_delta": 0
    }  # fmt: skip
    assert [c["a"]["type"] for c in doc["changes"] if c["status"] == "unseen"] == ["Flatten"]
    table = cli("diff", str(spec), "shapecli_models:Reused", *ALLOW)
    assert "1 parameter-free unseen in the Python model" in table.stdout
    # Between two specs, the same missing layers are removed: both sides show every layer.
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(
        "input: 2x20\nmodel:\n  - LazyLinear: [256]\n  - ReLU\n  - LazyLinear: [64]\n  - LazyLinear: [10]\n"
    )
    between = diff(shapecli.inspect(spec), shapecli.inspect(fewer))
    assert between.count("removed") == 2 and between.differs
    # A layer with parameters is never unseen.
    extra = tmp_path / "extra.yaml"
    extra.write_text(spec.read_text() + "  - LazyLinear: [10]\n")
    assert cli("diff", str(extra), "shapecli_models:Reused", *ALLOW, "--exit-code").exit_code == 1


def test_a_parameter_on_the_model_itself_is_compared() -> None:
    allow = ["shapecli_models"]
    one = shapecli.inspect("shapecli_models:Positions", "2x8x20", allow_import=allow)
    eight = shapecli.inspect("shapecli_models:MorePositions", "2x8x20", allow_import=allow)
    result = diff(one, eight)
    assert [(c.status, c.a and c.a.path) for c in result.changes] == [
        ("changed", ""),
        ("same", "fc"),
    ]
    assert result.changes[0].delta == 140 == eight.totals.params - one.totals.params
    assert result.differs


def test_changes_show_shapes_and_deltas(cli: Cli, golden: Callable[[str, str], None]) -> None:
    args = ("diff", str(CONFIGS / "mlp.yaml"), "shapecli_models:wider", *ALLOW, "-i", "2x20")
    table = cli(*args)
    assert table.exit_code == 0  # a difference is not a failure without --exit-code
    assert "weight 256×20 · bias 256 → weight 512×20 · bias 512" in table.stdout
    assert "+5,376" in table.stdout and "3 changed" in table.stdout
    golden("diff.txt", table.stdout.replace(str(CONFIGS), "configs"))
    markdown = cli(*args, "-f", "markdown")
    golden("diff.md", markdown.stdout.replace(str(CONFIGS), "configs"))
    assert cli(*args, "--exit-code").exit_code == 1
    doc = cli(*args, "-f", "json").json()
    assert doc["differ"] is True and doc["summary"]["changed"] == 3
    assert doc["summary"]["param_delta"] == 15_882 - 7_946
    first = doc["changes"][0]
    assert first["a"]["params"] == [
        {"name": "weight", "shape": [256, 20]},
        {"name": "bias", "shape": [256]},
    ]
    assert first["b"]["type"] == "Linear" and first["param_delta"] == 5_376


def test_a_lazy_layer_is_its_plain_type() -> None:
    spec = shapecli.inspect(CONFIGS / "mlp.yaml")  # LazyLinear
    plain = shapecli.inspect("shapecli_models:mlp", "2x20", allow_import=["shapecli_models"])
    assert all(not c.differences for c in diff(spec, plain).changes)


def test_a_saved_report_against_a_spec(cli: Cli, tmp_path: Path) -> None:
    saved = tmp_path / "before.json"
    saved.write_text(cli("inspect", str(CONFIGS / "resnet18.yaml"), "-f", "json").stdout)
    assert from_json(json.loads(saved.read_text())).totals.params == 11_689_512
    same = cli("diff", str(saved), str(CONFIGS / "resnet18.yaml"), "--exit-code")
    assert same.exit_code == 0, same.stdout
    wider = cli("diff", str(saved), str(CONFIGS / "resnet50.yaml"), "--exit-code")
    assert wider.exit_code == 1 and "the models differ" in wider.stdout


def test_each_side_is_titled_by_what_was_passed(cli: Cli, tmp_path: Path) -> None:
    """A saved report is the file given, not the spec it was once made from."""
    saved = tmp_path / "before.json"
    saved.write_text(cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json").stdout)
    after = str(CONFIGS / "mlp.yaml")
    markdown = cli("diff", str(saved), after, "-f", "markdown").stdout
    assert markdown.startswith(f"### `{saved}` → `{after}`\n")
    table = cli("diff", str(saved), after, "--all").stdout
    assert " ".join(table.split()).startswith(f"mlp ({saved}) → mlp ({after}) "), table
    target = cli("diff", "shapecli_models:mlp", after, *ALLOW, "-f", "markdown").stdout
    assert target.startswith(f"### `shapecli_models:mlp` → `{after}`\n")


def test_the_json_round_trip_keeps_what_a_diff_needs() -> None:
    report = shapecli.inspect(CONFIGS / "gpt2.yaml")
    back = from_json(json.loads(json.dumps(to_json(report))))
    assert not diff(report, back).differs


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["nowhere.yaml", "configs/mlp.yaml"], 2, "no such file"),
        (["configs/mismatch.yaml", "configs/mlp.yaml"], 2, "shape-mismatch"),
        (["{bad_json}", "configs/mlp.yaml"], 2, "not a shapecli JSON report"),
    ],
)
def test_trouble_is_exit_2(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, says: str
) -> None:
    monkeypatch.chdir(CONFIGS.parent)
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    result = cli("diff", *[a.replace("{bad_json}", str(bad)) for a in args])
    assert result.exit_code == code and says in result.stderr, result.stderr
    as_json = cli("diff", *[a.replace("{bad_json}", str(bad)) for a in args], "-f", "json")
    assert json.loads(as_json.stdout)["ok"] is False  # still one document
