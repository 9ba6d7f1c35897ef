"""Never wrong, never stuck, never a crash: one record per call, Refs that reach into
repeat copies, models handed over in train mode, only shape problems called shape
mismatches, bugs called bugs, one JSON document on every path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import shapecli
from conftest import CONFIGS, Result
from shapecli.construct import build_modules
from shapecli.dryrun import dry_run
from shapecli.errors import ShapecliError
from shapecli.inputs import parse_input
from shapecli.report import Report, to_json
from shapecli.spec.parse import parse_spec

Cli = Callable[..., Result]


def run(text: str, replay: bool = True) -> Report:
    spec = parse_spec(text, "s.yaml")
    built = build_modules(spec)
    return dry_run(built, spec.inputs, spec.name, spec.file, replay=replay)


# -- Refs into repeat copies --------------------------------------------------------------

REF_INTO_COPY = """
input: 2x4
model:
  - Sequential: [{LazyLinear: 4, name: fc}]
    repeat: 3
    name: enc
  - Ref: enc.1.fc
"""


def test_a_ref_into_a_repeat_copy_behaves_as_without_replay() -> None:
    replayed, full = run(REF_INTO_COPY, replay=True), run(REF_INTO_COPY, replay=False)
    assert replayed.ok and replayed == full
    ref = next(r for r in replayed.rows if r.path == "1")
    assert [p.shared_with for p in ref.params] == ["enc.1.fc.weight", "enc.1.fc.bias"]


def test_build_with_a_ref_into_a_repeat_copy() -> None:
    spec = parse_spec(REF_INTO_COPY, "s.yaml")
    model = shapecli.build(spec)
    assert model.get_submodule("1").target is model.get_submodule("enc.1.fc")
    assert model(torch.randn(2, 4)).shape == (2, 4)


# -- one record per call ----------------------------------------------------------------

REUSED = """
input: 2x4
model:
  - Linear: [4, 8]
    name: fc
  - Ref: fc
"""


def test_a_failure_on_the_second_use_blames_that_use() -> None:
    (error,) = run(REUSED).errors
    assert error.code == "shape-mismatch"
    assert error.path == "1" and error.source is not None and error.source.line == 6
    assert error.input_shapes == ((2, 8),)  # that call's shape, not the first call's 2×4
    assert error.produced_by == "fc (Linear)"
    assert error.expected == "last dim 4 (in_features)"
    assert any("fc (Linear)" in note for note in error.notes)
    rows = {r.path: r for r in run(REUSED).rows}
    assert rows["fc"].status == "ok" and rows["fc"].output_shapes == ((2, 8),)
    assert rows["1"].status == "failed" and rows["1"].input_shapes == ((2, 8),)


class _GrowsInPlace(nn.Module):
    """A user layer that changes its input's shape in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze_(0)


def test_shapes_are_recorded_when_the_call_happens() -> None:
    from shapecli.construct import BuiltModel
    from shapecli.layers.own import Sequential
    from shapecli.spec.model import Entry

    with torch.device("meta"):
        model = Sequential(nn.Linear(4, 4), _GrowsInPlace())
    where = parse_spec("model: [ReLU]\n", "s.yaml").model.source
    entries = {
        "": Entry("Sequential", "", where),
        "0": Entry("Linear", "0", where),
        "1": Entry("x._GrowsInPlace", "1", where),
    }
    report = dry_run(BuiltModel(model, entries), [parse_input("2x4")], "m", "s.yaml")
    rows = {r.path: r for r in report.rows}
    assert rows["0"].output_shapes == ((2, 4),)  # not the 1×2×4 it became later
    assert rows["1"].input_shapes == ((2, 4),) and rows["1"].output_shapes == ((1, 2, 4),)


# -- what build() hands over ---------------------------------------------------------------


def test_build_returns_every_module_in_train_mode() -> None:
    text = (
        "input: 2x5x8\nmodel:\n"
        "  - TransformerEncoderLayer: {d_model: auto, nhead: 2, batch_first: true}\n"
        "    repeat: 2\n"
        "  - LazyLinear: 3\n"
    )
    model = shapecli.build(parse_spec(text, "s.yaml"))
    assert all(m.training for m in model.modules())
    assert model.get_submodule("0.1.dropout1").training  # created during the dry run


@pytest.mark.slow
def test_build_does_not_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    from shapecli import replay

    def refuse(*args: object) -> None:
        raise AssertionError("build must construct every copy")

    monkeypatch.setattr(replay, "replicate_into", refuse)
    model = shapecli.build(CONFIGS / "llama-tiny.yaml")
    assert sum(p.numel() for p in model.parameters()) == 3_332_352


# -- only shape problems are shape mismatches; bugs are bugs -----------------------------------


def test_a_ref_cycle_is_an_invalid_spec_found_at_build_time() -> None:
    text = (
        "model:\n  - Sequential: [{Ref: b}]\n    name: a\n  - Sequential: [{Ref: a}]\n    name: b\n"
    )
    with pytest.raises(ShapecliError) as info:
        build_modules(parse_spec(text, "s.yaml"))
    problem = info.value.problem
    assert problem.code == "spec-invalid" and "call each other forever" in problem.message
    assert problem.source is not None and problem.source.line in (2, 4)


def test_a_bug_in_the_recorder_is_internal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from shapecli import record

    def broken(self: object, module: object, output: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(record.Recorder, "end", broken)
    result = cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json")
    assert result.exit_code == 3
    (error,) = result.json()["errors"]  # still exactly one JSON document
    assert error["code"] == "internal" and "KeyError" in error["message"]


def test_a_bug_in_an_own_layer_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    from shapecli.layers import own

    monkeypatch.setattr(own, "F", object())  # Attention's F.scaled_dot_product_attention
    spec = parse_spec("input: 1x4x8\nmodel:\n  - Attention: {dim: 8, heads: 2}\n", "s.yaml")
    with pytest.raises(AttributeError):
        shapecli.inspect(spec)


def test_json_on_every_path(cli: Cli) -> None:
    for args in (
        ["inspect", str(CONFIGS / "mlp.yaml"), "-f", "json", "--bogus"],
        ["inspect", str(CONFIGS / "mlp.yaml"), "--format=json", "--depth", "x"],
        ["lint", str(CONFIGS), "-f", "json", "-i", "2y3"],
        ["lint", "-f", "json", "--nope", str(CONFIGS)],
    ):
        result = cli(*args)
        assert result.exit_code == 2, args
        doc = json.loads(result.stdout)  # exactly one document
        errors = doc["errors"]
        assert errors and errors[0]["code"] in ("usage", "input-invalid"), args


# -- bounded reads, huge numbers, lint's edges -------------------------------------------------


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo", "link"])
def test_only_regular_files_are_read(cli: Cli, tmp_path: Path, target: str) -> None:
    import os

    path = Path(target)
    if target == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
    elif target == "link":
        path = tmp_path / "zero.yaml"
        path.symlink_to("/dev/zero")
    result = cli("inspect", str(path), "-f", "json")
    assert result.exit_code == 2
    assert result.json()["errors"][0]["code"] == "file-error"
    lint = cli("lint", str(path), "-f", "json").json()
    assert lint["files"][0]["problems"][0]["code"] == "file-error"


def test_too_large_for_int64_is_a_bad_argument_without_cpp_frames(
    cli: Cli, write: Callable[..., Path]
) -> None:
    spec = write("input: 2x4\nmodel:\n  - Linear: [99999999999999999999999, 4]\n")
    result = cli("inspect", str(spec))
    assert result.exit_code == 1 and ":3:14: error[bad-arguments]" in result.stderr
    assert "does not fit in 64 bits" in result.stderr
    spec = write("input: 2x4\nmodel:\n  - Linear: [4000000000, 4000000000]\n")
    result = cli("inspect", str(spec))
    assert "overflowed" in result.stderr and "frame #" not in result.stderr
    spec = write("input: 2x4000000000\nmodel:\n  - LazyLinear: 4000000000\n")
    (error,) = cli("inspect", str(spec), "-f", "json").json()["errors"]
    assert error["code"] == "bad-arguments" and "more than int64 can count" in error["message"]
    assert "expects last dim" not in error["message"]


def test_lint_of_a_folder_without_specs_is_exit_2(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a spec")
    result = cli("lint", str(tmp_path))
    assert result.exit_code == 2 and "no spec files" in result.stdout


def test_lint_reports_every_independent_problem(cli: Cli, write: Callable[..., Path]) -> None:
    spec = write(
        "input: 2x4\nmodel:\n"
        "  - Relu\n"
        "  - LazyLinear: {out_featurs: 4}\n"
        "  - Dropout: {p: 1.5}\n"
        "  - LazyLinear: 2\n"
    )
    lines = [line for line in cli("lint", str(spec)).stdout.splitlines() if line[:1] != " "]
    assert [line.split(": ")[0].rsplit(":", 2)[1] for line in lines[:-1]] == ["3", "4", "5"]
    assert "3 errors" in lines[-1]
    parse_errors = write("model:\n  - LazyLinear: ${nope}\n  - Linear: ${nope2}\n  - ReLU\n")
    assert "2 errors" in cli("lint", str(parse_errors)).stdout


# -- the speed-ups -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ("mlp", None),
        ("resnet18", None),
        ("gpt2", None),
        ("mismatch", None),
        ("llama-tiny", None),
        ("lstm-classifier", "2x16:long"),  # a short sequence: without the rule it steps
    ],
)
def test_the_shortcuts_change_nothing_in_the_whole_report(config: str, shape: str | None) -> None:
    """Replay and the recurrent shape rule against a plain run: the whole JSON report."""
    from shapecli.spec.parse import read_spec

    spec = read_spec(CONFIGS / f"{config}.yaml")
    inputs = [parse_input(shape)] if shape else spec.inputs

    def report(fast: bool) -> dict[str, object]:
        built = build_modules(spec)
        report = dry_run(built, inputs, spec.name, spec.file, replay=fast, shortcuts=fast)
        return to_json(report)

    assert report(True) == report(False)


def test_lint_goes_on_after_a_block_bomb(cli: Cli, tmp_path: Path) -> None:
    import shutil

    hostile = Path(__file__).parent / "hostile" / "specs"
    for name in ("block-bomb.yaml", "block-chain-400.yaml", "good.yaml"):
        shutil.copy(hostile / name, tmp_path / name)
    result = cli("lint", str(tmp_path))
    assert result.exit_code == 1
    assert "3 files checked, 2 errors" in result.stdout
