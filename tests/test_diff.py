"""shapecli diff, and Python models as input: is the spec the network it copies, and
what did a change do?"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shapecli
from conftest import CONFIGS, Result
from shapecli.diff import Diff, diff
from shapecli.report import Report, from_json, to_json

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
    assert "no differences found" in result.stdout


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


@pytest.mark.slow
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


@pytest.mark.parametrize("command", ["lint", "diff"])
def test_another_commands_json_is_named_as_such(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A lint or diff document is a shapecli JSON report too: say whose, and what to give."""
    monkeypatch.chdir(CONFIGS.parent)
    args = ["configs/mlp.yaml"] * (2 if command == "diff" else 1)
    saved = tmp_path / f"{command}.json"
    saved.write_text(cli(command, *args, "-f", "json").stdout)
    for run in (["diff", str(saved), "configs/mlp.yaml"], ["graph", str(saved)]):
        result = cli(*run)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(
            f"{saved}: error[file-error] this is what `shapecli {command} -f json` writes, "
            "not a model's report (what `shapecli inspect -f json` writes)\n"
            "  hint: save a model's report with `shapecli inspect SPEC -f json > FILE`"
        ), result.stderr
        assert "KeyError" not in result.stderr and "unexpected key" not in result.stderr


# -- structure, not shapes -----------------------------------------------------------------

VISION = "shapecli_models.vision"


def statuses(result: Diff) -> dict[str, int]:
    return {s: result.count(s) for s in ("same", "changed", "added", "removed", "unseen")}


def spec_report(write: Callable[[str, str], Path], text: str, name: str = "spec.yaml") -> Report:
    return shapecli.inspect(write(text, name))


@pytest.mark.parametrize(
    ("config", "target", "units"),
    [
        ("lenet5", f"{VISION}:LeNet5", 11),  # one ReLU called 4 times, one MaxPool2d twice
        ("resnet18", "plain_models:ResNet18", 60),  # a block's ReLU called twice
        ("resnet18", "torchvision_order", 60),
        ("alexnet", f"{VISION}:alexnet", 21),
        ("vgg16", f"{VISION}:vgg16", 39),  # flat features where the spec groups conv + ReLU
    ],
)
def test_a_shipped_config_is_the_python_model_it_copies(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, config: str, target: str, units: int
) -> None:
    monkeypatch.syspath_prepend(str(CONFIGS.parent / "benchmarks"))
    if target == "torchvision_order":  # torchvision runs the shortcut after the body
        import plain_models

        def forward(self: Any, x: Any) -> Any:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

        monkeypatch.setattr(plain_models.BasicBlock, "forward", forward)
        target = "plain_models:ResNet18"
    args = (
        "diff",
        str(CONFIGS / f"{config}.yaml"),
        target,
        *ALLOW,
        "--allow-import",
        "plain_models",
    )
    result = cli(*args, "--exit-code", "-f", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["summary"] | {"param_delta": 0} == {
        "same": units, "changed": 0, "added": 0, "removed": 0, "unseen": 1, "param_delta": 0
    }  # fmt: skip
    # what no module tree shows is the spec's Flatten (torch.flatten in forward)
    assert [c["a"]["type"] for c in doc["changes"] if c["status"] == "unseen"] == ["Flatten"]


def test_a_module_called_twice_pairs_call_by_call(cli: Cli) -> None:
    spec = shapecli.inspect(CONFIGS / "lenet5.yaml")
    model = shapecli.inspect(f"{VISION}:LeNet5", spec.inputs, allow_import=["shapecli_models"])
    pools = [(c.a.path, c.b.path, c.b.call) for c in diff(spec, model).changes
             if c.a and c.b and c.b.type == "MaxPool2d"]  # fmt: skip
    assert pools == [("2", "pool", 0), ("5", "pool", 1)]
    table = cli("diff", str(CONFIGS / "lenet5.yaml"), f"{VISION}:LeNet5", *ALLOW, "--all")
    assert "pool (MaxPool2d, call 2)" in table.stdout


LENET = (CONFIGS / "lenet5.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("  - ReLU\n  - MaxPool2d: 2\n  - LazyConv2d", "  - GELU\n  - MaxPool2d: 2\n  - LazyConv2d",
         "type ReLU → GELU"),
        ("  - MaxPool2d: 2\n  - Flatten", "  - AvgPool2d: 2\n  - Flatten",
         "type MaxPool2d → AvgPool2d"),
        ("{out_channels: 16, kernel_size: 5}", "{out_channels: 16, kernel_size: 5, dilation: 1}",
         None),  # the default, written out: the same layer
        ("  - MaxPool2d: 2\n  - Flatten", "  - MaxPool2d: [2, 2]\n  - Flatten", None),
        ("  - MaxPool2d: 2\n  - Flatten", "  - MaxPool2d: {kernel_size: [2, 2], stride: 2}\n"
         "  - Flatten", None),  # 2 is (2, 2)
        ("  - LazyLinear: 84\n  - ReLU", "  - LazyLinear: 84\n  - ReLU: {inplace: true}", None),
        ("  - LazyLinear: 84\n  - ReLU", "  - LazyLinear: 84\n  - GELU: {approximate: tanh}",
         "type ReLU → GELU"),
    ],
)  # fmt: skip
def test_what_shapes_cannot_tell_still_differs(
    write: Callable[[str, str], Path], old: str, new: str, says: str | None
) -> None:
    assert old in LENET
    result = diff(
        shapecli.inspect(CONFIGS / "lenet5.yaml"), spec_report(write, LENET.replace(old, new, 1))
    )
    changed = [str(d) for c in result.changes for d in c.differences]
    assert result.differs is (says is not None), changed
    assert changed == ([says] if says else [])


@pytest.mark.parametrize(
    ("a", "b", "says"),
    [
        (
            "padding: 1",
            "padding: 2, dilation: 2",
            "padding (1, 1) → (2, 2); dilation (1, 1) → (2, 2)",
        ),
        ("padding: 1", "padding: 1, padding_mode: reflect", "padding_mode 'zeros' → 'reflect'"),
        ("padding: 1", "padding: 1, groups: 2", "groups 1 → 2"),
    ],
)
def test_an_argument_change_with_the_same_shapes_differs(
    cli: Cli, write: Callable[[str, str], Path], a: str, b: str, says: str
) -> None:
    text = "input: 1x4x16x16\nmodel:\n  - LazyConv2d: {out_channels: 4, kernel_size: 3, ARGS}\n"
    before = write(text.replace("ARGS", a), "a.yaml")
    after = write(text.replace("ARGS", b), "b.yaml")
    if "groups" not in b:  # the same shapes and counts: only the argument tells them apart
        assert shapecli.inspect(before).totals.params == shapecli.inspect(after).totals.params
    result = cli("diff", str(before), str(after), "--exit-code")
    assert result.exit_code == 1 and says in result.stdout, result.stdout
    assert "Arguments, ties" in result.stdout


def test_one_inserted_layer_is_added_and_nothing_else(write: Callable[[str, str], Path]) -> None:
    longer = LENET.replace(
        "  - MaxPool2d: 2\n  - Flatten", "  - MaxPool2d: 2\n  - Dropout: 0.2\n  - Flatten"
    )
    result = diff(shapecli.inspect(CONFIGS / "lenet5.yaml"), spec_report(write, longer))
    assert statuses(result) == {"same": 12, "changed": 0, "added": 1, "removed": 0, "unseen": 0}
    (added,) = [c.b for c in result.changes if c.status == "added"]
    assert added is not None and (added.path, added.type) == ("6", "Dropout")


def test_a_layer_moved_from_one_block_to_the_next_is_a_change(
    write: Callable[[str, str], Path],
) -> None:
    """In order the layers are the same (Linear, ReLU, Linear); in the tree the ReLU left
    the first residual body for the second, which computes something else."""
    before = "input: 2x8\nmodel:\n  - Residual: [{LazyLinear: 8}, ReLU]\n  - Residual: [{LazyLinear: 8}]\n"
    after = "input: 2x8\nmodel:\n  - Residual: [{LazyLinear: 8}]\n  - Residual: [ReLU, {LazyLinear: 8}]\n"
    result = diff(spec_report(write, before, "a.yaml"), spec_report(write, after, "b.yaml"))
    assert [(c.status, c.a and c.a.path, c.b and c.b.path) for c in result.changes] == [
        ("same", "0.body.0", "0.body.0"),
        ("removed", "0.body.1", None),
        ("added", None, "1.body.0"),
        ("same", "1.body.0", "1.body.1"),
    ]


TIED = """input: 1x8:long
model:
  - Embedding: [100, 16]
    name: wte
  - LazyLinear: {out_features: 100, bias: false}
    name: up
  - LazyLinear: {out_features: 16, bias: false}
    name: down
  - LazyLinear: {out_features: 100, bias: false}
    name: lm_head
    tie: {weight: TARGET}
"""


def test_a_weight_tied_to_another_layer_differs(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    to_wte = write(TIED.replace("TARGET", "wte.weight"), "wte.yaml")
    to_up = write(TIED.replace("TARGET", "up.weight"), "up.yaml")  # the same shape and counts
    result = cli("diff", str(to_wte), str(to_up), "--exit-code")
    assert result.exit_code == 1, result.stdout
    assert "weight: tied to wte.weight → tied to up.weight" in result.stdout
    model = "shapecli_models:TiedHead"  # ties lm_head.weight to wte.weight in Python
    assert cli("diff", str(to_wte), model, *ALLOW, "--exit-code").exit_code == 0
    assert cli("diff", str(to_up), model, *ALLOW, "--exit-code").exit_code == 1


def test_a_block_run_twice_pairs_with_a_ref(cli: Cli, write: Callable[[str, str], Path]) -> None:
    text = "input: 2x16\nmodel:\n  - Sequential: [{Linear: [16, 16]}, ReLU]\n    name: block\n  - SECOND\n  - Linear: [16, 4]\n"
    ref = write(text.replace("SECOND", "Ref: block"), "ref.yaml")
    copy = write(text.replace("SECOND", "Sequential: [{Linear: [16, 16]}, ReLU]"), "copy.yaml")
    model = "shapecli_models:Twice"  # self.block(self.block(x))
    same = cli("diff", str(ref), model, *ALLOW, "--exit-code", "-f", "json")
    assert same.exit_code == 0, same.stdout
    assert [(c["a"]["path"], c["b"]["path"], c["b"]["call"]) for c in same.json()["changes"]] == [
        ("block.0", "block.0", 0), ("block.1", "block.1", 0), ("1", "block", 1), ("2", "head", 0)
    ]  # fmt: skip
    other = cli("diff", str(copy), model, *ALLOW, "--exit-code")  # its own weights: not shared
    assert other.exit_code == 1 and "runs a module of its own → again block.0" in other.stdout


def test_arguments_are_in_the_report_and_read_back(cli: Cli, tmp_path: Path) -> None:
    doc = cli("inspect", str(CONFIGS / "lenet5.yaml"), "-f", "json").json()
    conv = doc["layers"][1]
    assert conv["type"] == "LazyConv2d" and conv["arguments"] == {
        "in_channels": "1", "out_channels": "6", "kernel_size": "(5, 5)", "stride": "(1, 1)",
        "padding": "(0, 0)", "dilation": "(1, 1)", "groups": "1", "padding_mode": "'zeros'",
    }  # fmt: skip
    assert from_json(doc).rows[1].arguments[2] == ("kernel_size", "(5, 5)")
    saved = tmp_path / "lenet.json"
    saved.write_text(json.dumps(doc))
    gelu = tmp_path / "gelu.yaml"
    gelu.write_text(
        LENET.replace(
            "  - MaxPool2d: 2\n  - Flatten",
            "  - MaxPool2d: {kernel_size: 2, ceil_mode: true}\n  - Flatten",
        )
    )
    result = cli("diff", str(saved), str(gelu), "--exit-code", "-f", "json")
    assert result.exit_code == 1
    (changed,) = [c for c in result.json()["changes"] if c["status"] == "changed"]
    assert changed["differences"] == ["ceil_mode False → True"]
    assert changed["b"]["arguments"]["ceil_mode"] == "True"
    doc["layers"][1]["arguments"] = {"kernel_size": [5, 5]}  # values are texts
    saved.write_text(json.dumps(doc))
    refused = cli("diff", str(saved), str(gelu))
    assert refused.exit_code == 2 and "not a shapecli JSON report" in refused.stderr


def test_input_cannot_apply_to_a_saved_report(cli: Cli, tmp_path: Path) -> None:
    """A saved report is not run again: under another --input only the spec would be,
    and the layers the input sizes would seem to change."""
    saved = tmp_path / "before.json"
    saved.write_text(cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json").stdout)  # 2x20
    spec = str(CONFIGS / "mlp.yaml")
    for args in ([str(saved), spec], [spec, str(saved)]):
        refused = cli("diff", *args, "-i", "2x30", "--exit-code")
        assert refused.exit_code == 2 and not refused.stdout, refused.stdout
        assert (
            f"--input 2x30 cannot apply to `{saved}`: it is a saved report, made with input 2x20"
            in refused.stderr
        )
        assert (
            cli("diff", *args, "-i", "2x20", "--exit-code").exit_code == 0
        )  # what it was made with
    as_json = cli("diff", str(saved), spec, "-i", "2x30", "-f", "json")
    assert as_json.exit_code == 2 and as_json.json()["errors"][0]["code"] == "input-invalid"


def test_different_inputs_are_said(cli: Cli, tmp_path: Path) -> None:
    """Without --input each side keeps its own: when they differ the summary says so."""
    saved = tmp_path / "before.json"
    saved.write_text(cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json").stdout)
    wider = tmp_path / "batch.yaml"
    wider.write_text((CONFIGS / "mlp.yaml").read_text().replace("input: 2x20", "input: 4x20"))
    result = cli("diff", str(saved), str(wider), "--exit-code")
    assert result.exit_code == 1 and "inputs 2x20 → 4x20" in result.stdout, result.stdout
    doc = cli("diff", str(saved), str(wider), "-f", "json").json()
    assert [i["shape"] for i in (*doc["a"]["inputs"], *doc["b"]["inputs"])] == [[2, 20], [4, 20]]


def test_a_module_never_called_is_not_compared(cli: Cli) -> None:
    """It computes nothing: only what it owns would count (none here)."""
    result = cli("diff", str(CONFIGS / "mlp.yaml"), "shapecli_models:Spare", *ALLOW, "--exit-code")
    assert result.exit_code == 0, result.stdout
    assert "0 changed, 0 added, 0 removed, 1 parameter-free unseen" in result.stdout


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"causal": "false"}, "causal True → False"),
        ({"heads": "2"}, "heads 4 → 2"),
        ({"rope_theta": "10000"}, "rope_theta None → 10000"),
    ],
)
def test_a_containers_own_arguments_are_compared(
    cli: Callable[..., Result], tmp_path: Path, change: dict[str, str], said: str
) -> None:
    """An Attention's children (q, k, v, o) keep their shapes when its heads, causal
    mask or rotary change, but what it computes does not: the diff says so and fails."""

    def spec(name: str, arguments: dict[str, str]) -> Path:
        written = ", ".join(f"{k}: {v}" for k, v in arguments.items())
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            "input: 2x6x16\nmodel:\n  - LayerNorm: 16\n  - Attention: {" + written + "}\n"
        )
        return path

    base = {"dim": "16", "heads": "4", "causal": "true"}
    a, b = spec("a", base), spec("b", {**base, **change})
    same = cli("diff", str(a), str(a), "--exit-code")
    assert same.exit_code == 0 and "no differences found" in same.stdout
    changed = cli("diff", str(a), str(b), "--exit-code")
    assert changed.exit_code == 1, changed.stdout
    assert said in changed.stdout and "1 changed" in changed.stdout
