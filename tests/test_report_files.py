"""Saved reports as files: one loaded back is the live run — the same table, picture and
comparison — and one that is not a report, or records errors, is refused by ``diff``
with exit 2, saying which file and where, never as if its errors were found now."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS, Result, run_process
from shapecli.render import GRAPH_FORMATS, REPORT_FORMATS, Options
from shapecli.report import Report, read_report, to_json

Cli = Callable[..., Result]

#: Every shipped config, plus the runs that fill what a plain run leaves empty.
RUNS: list[tuple[str, dict[str, object]]] = [
    *[(p.stem, {}) for p in sorted(CONFIGS.glob("*.yaml"))],
    ("llama-tiny", {"flops": True, "memory": True}),
    ("resnet18", {"input": "Bx3xHxW"}),
    ("mlp", {"input": "2x3"}),  # fails at the first layer
    ("nowhere", {}),  # no such file: a report with nothing but an error
]


def live(stem: str, options: dict[str, object]) -> Report:
    return shapecli.inspect(CONFIGS / f"{stem}.yaml", **options)  # type: ignore[arg-type]


def saved(report: Report) -> Report:
    return read_report(json.dumps(to_json(report), indent=2, ensure_ascii=False))


@pytest.mark.slow
@pytest.mark.parametrize(("stem", "options"), RUNS, ids=[f"{s}{o or ''}" for s, o in RUNS])
def test_a_saved_report_is_the_report(stem: str, options: dict[str, object]) -> None:
    report = live(stem, options)
    assert saved(report) == report


# Several shapes of model: plain, tied weights, named inputs and repeats, symbolic sizes,
# a failing spec, a spec with layers that never ran.
RENDERED = [
    ("mlp", {}),
    ("gpt2", {}),
    ("bert-base", {"flops": True}),
    ("resnet18", {"input": "Bx3xHxW"}),
    ("mismatch", {}),
    ("partial", {}),
    ("llama-tiny", {"flops": True, "memory": True}),
]
OPTIONS = [Options(), Options(depth=1), Options(depth=3, paths=True)]


@pytest.mark.slow
@pytest.mark.parametrize(("stem", "options"), RENDERED, ids=[s for s, _ in RENDERED])
def test_a_saved_report_renders_as_the_live_run(stem: str, options: dict[str, object]) -> None:
    report = live(stem, options)
    back = saved(report)
    formats = {
        **{name: REPORT_FORMATS[name] for name in REPORT_FORMATS},
        **{name: GRAPH_FORMATS[name] for name in GRAPH_FORMATS if name != "svg"},
    }  # svg is Graphviz's drawing of the dot text, compared as dot
    for name, render in formats.items():
        for option in OPTIONS:
            assert render(back, option) == render(report, option), (name, option)


def test_graph_draws_a_saved_report(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIGS.parent)
    for stem in ("mlp", "resnet18"):
        path = tmp_path / f"{stem}.json"
        path.write_text(cli("inspect", f"configs/{stem}.yaml", "-f", "json").stdout)
        for fmt in ("mermaid", "dot"):
            drawn = cli("graph", str(path), "-f", fmt)
            assert drawn.exit_code == 0 and drawn.stderr == ""
            assert drawn.stdout == cli("graph", f"configs/{stem}.yaml", "-f", fmt).stdout


def test_graph_of_a_saved_failing_run_marks_it_without_reporting_it_anew(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIGS.parent)
    path = tmp_path / "mismatch.json"
    path.write_text(cli("inspect", "configs/mismatch.yaml", "-f", "json").stdout)
    drawn = cli("graph", str(path))
    assert drawn.stdout == cli("graph", "configs/mismatch.yaml").stdout and "✗" in drawn.stdout
    assert drawn.exit_code == 0
    assert (
        drawn.stderr
        == f"{path}: note: the run this report was saved from had 1 error; the picture marks where\n"
    )
    again = cli("graph", str(path), "--input", "2x20")
    assert again.exit_code == 2 and "a saved report holds its run" in again.stderr


def test_diff_of_two_saved_reports(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIGS.parent)
    files = []
    for stem in ("mlp", "partial"):
        files.append(tmp_path / f"{stem}.json")
        files[-1].write_text(cli("inspect", f"configs/{stem}.yaml", "-f", "json").stdout)
    from_files = cli("diff", *map(str, files), "-f", "json").json()
    from_specs = cli("diff", "configs/mlp.yaml", "configs/partial.yaml", "-f", "json").json()
    assert from_files == from_specs and from_files["differ"] is True


MALFORMED = [
    ("many", lambda d: d["layers"][1].update(param_count="many"),
     '$.layers[1].param_count: expected an integer from 0 to 2**63 - 1, got "many"'),
    ("float-shape", lambda d: d["layers"][1].update(output_shapes=[[2.0, 256]]),
     "$.layers[1].output_shapes[0][0]: expected an integer from 0 to 2**63 - 1 or a string or null, got 2.0"),
    ("string-total", lambda d: d["totals"].update(params="7946"),
     '$.totals.params: expected an integer from 0 to 2**63 - 1, got "7946"'),
    ("unknown-code", lambda d: d.update(errors=[{**d["errors"][0], "code": "no-such-code"}]),
     '$.errors[0].code: expected one of "yaml-syntax"'),
    ("ok-with-errors", lambda d: d.update(ok=True),
     "$.ok: is true, but the rest of the document implies false"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "says"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_diff_refuses_a_malformed_report_with_its_json_path(
    cli: Cli, tmp_path: Path, name: str, edit: Callable[[dict[str, object]], None], says: str
) -> None:
    stem = "mismatch" if name in ("unknown-code", "ok-with-errors") else "mlp"
    document = cli("inspect", str(CONFIGS / f"{stem}.yaml"), "-f", "json").json()
    edit(document)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(document))
    result = cli("diff", str(path), str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"{path}: error[file-error] not a shapecli JSON report: {says}")
    assert "no-such-code]" not in result.stderr and "shape-mismatch]" not in result.stderr


@pytest.mark.process
def test_diff_refuses_a_report_nested_too_deep(tmp_path: Path) -> None:
    """In a real process: the recursion a parser hits is no traceback, nor exit 3."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    done = run_process("diff", str(path), "configs/mlp.yaml")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"{path}: error[file-error] not a shapecli JSON report: $[0][0][0][0][0][0]: nested "
        "deeper than 6 levels\n"
    )


def test_diff_refuses_a_report_of_a_failed_run_in_its_own_words(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(cli("inspect", str(CONFIGS / "mismatch.yaml"), "-f", "json").stdout)
    result = cli("diff", str(path), str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 2
    assert result.stderr == (
        f'{path}: error[usage] the report records 1 error (first: shape-mismatch "layer 2 '
        '(Linear) cannot take its input 2×256: it expects last dim 30 (in_features)"); diff '
        "compares models that ran\n"
    )
    as_json = cli("diff", str(CONFIGS / "mlp.yaml"), str(path), "-f", "json").json()
    assert [e["code"] for e in as_json["errors"]] == ["usage"]


def test_diff_refuses_a_report_that_records_no_run(cli: Cli, tmp_path: Path) -> None:
    report = replace(live("mlp", {}), rows=(), ran=False)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(to_json(report)))
    result = cli("diff", str(path), str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 2 and "the report records no dry run" in result.stderr
