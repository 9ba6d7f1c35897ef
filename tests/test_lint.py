"""``shapecli lint``: every spec under some paths, in text, JSON and GitHub formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CONFIGS, Result
from shapecli.render.lint import escape_data, escape_property

Cli = Callable[..., Result]
FIXTURES = Path(__file__).parent / "lint_specs"


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)  # paths in the output are relative, so golden files are stable


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_formats(cli: Cli, golden: Callable[[str, str], None], in_fixtures: None, fmt: str) -> None:
    result = cli("lint", ".", "--format", fmt)
    assert result.exit_code == 1 and result.stderr == ""
    golden(f"lint.{'txt' if fmt == 'text' else fmt}", result.stdout)


def test_text_names_every_problem_once_with_its_place_severity_and_hint(
    cli: Cli, in_fixtures: None
) -> None:
    lines = cli("lint", ".").stdout.splitlines()
    assert lines == [
        "broken/bad-argument.yaml:4:17: error[bad-arguments] LazyLinear: `out_features` must be a whole number, not the text '16' (write the number without quotes)",
        "broken/mismatch.yaml:6:5: error[shape-mismatch] layer 2 (Linear) cannot take its input 2×16: it expects last dim 30 (in_features)",
        "  hint: use `LazyLinear` or `in_features: auto` to take the size from the input",
        "broken/not-yaml.yml:1:14: error[yaml-syntax] while parsing a flow sequence did not find expected ',' or ']'",
        "  hint: the [ at line 1, column 6 is not closed: close it with `]`",
        "broken/syntax.yaml:5:4: error[yaml-syntax] while parsing a block collection did not find expected '-' indicator",
        "  hint: check the indentation: items of one list start in the same column",
        "broken/unknown-layer.yaml:5:5: error[unknown-layer] unknown layer type `Relu` (did you mean `ReLU`?)",
        "  hint: `shapecli layers` lists every type name a spec may use",
        "no-input.yaml:3:3: warning[dry-run-skipped] no `input:` in the spec, so the layers were built and checked but not dry-run; add `input:` to check shapes",
        "7 files checked, 5 errors, 1 warning",
    ]  # fmt: skip
    github = cli("lint", ".", "-f", "github").stdout
    hints = [line.removeprefix("  hint: ") for line in lines if line.startswith("  hint: ")]
    assert all(f"%0Ahint: {hint}" in github for hint in hints)  # the same hints as GitHub's


def test_json_lists_every_file(cli: Cli, in_fixtures: None) -> None:
    doc = cli("lint", ".", "-f", "json").json()
    assert doc["summary"] == {"files": 7, "errors": 5, "warnings": 1} and doc["ok"] is False
    by_file = {f["file"]: f for f in doc["files"]}
    good = by_file["good.yaml"]
    assert {k: good[k] for k in ("file", "ok", "dry_run", "problems")} == {
        "file": "good.yaml",
        "ok": True,
        "dry_run": True,
        "problems": [],
    }
    totals = good["totals"]  # one lint answers "how big is every config here"
    assert totals["params"] == totals["trainable"] > 0
    assert totals["param_bytes"] == 4 * totals["params"]
    assert by_file["no-input.yaml"]["totals"] is None  # not dry-run: sizes unknown
    assert by_file["no-input.yaml"]["ok"] is True and by_file["no-input.yaml"]["dry_run"] is False
    (problem,) = by_file["broken/mismatch.yaml"]["problems"]
    assert problem["code"] == "shape-mismatch" and problem["source"] == {
        "file": "broken/mismatch.yaml", "line": 6, "column": 5,
    }  # fmt: skip


def test_exit_codes(cli: Cli, in_fixtures: None) -> None:
    assert cli("lint", "good.yaml").exit_code == 0
    assert cli("lint", "good.yaml", "no-input.yaml").exit_code == 0  # warnings do not fail
    assert cli("lint", "good.yaml", "broken/mismatch.yaml").exit_code == 1
    missing = cli("lint", "good.yaml", "nope.yaml")
    assert missing.exit_code == 2
    assert "nope.yaml: error[file-error] no such file or directory" in missing.stdout
    assert "1 file checked, 1 error, 0 warnings" in missing.stdout
    assert cli("lint", "*.nothing").exit_code == 2
    assert cli("lint", "good.yaml", "-i", "2x-1").exit_code == 2
    assert cli("lint").exit_code == 2  # PATH is required


def test_globs_and_input_override(cli: Cli, in_fixtures: None) -> None:
    doc = cli("lint", "broken/*.yaml", "-f", "json").json()
    assert sorted(f["file"] for f in doc["files"]) == [
        "broken/bad-argument.yaml", "broken/mismatch.yaml", "broken/syntax.yaml", "broken/unknown-layer.yaml",
    ]  # fmt: skip
    doc = cli("lint", "good.yaml", "no-input.yaml", "-i", "3x7", "-f", "json").json()
    assert doc["ok"] is True and all(f["dry_run"] for f in doc["files"])


def test_github_format_is_the_default_on_github_actions(
    cli: Cli, in_fixtures: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = cli("lint", "broken/mismatch.yaml").stdout
    assert out.startswith(
        "::error file=broken/mismatch.yaml,line=6,col=5,title=shapecli shape-mismatch::"
    )
    assert "%0Ahint: use `LazyLinear`" in out


def test_github_escaping(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "odd, name: 100%.yaml"
    odd.write_text("model:\n  - Relu\n")
    monkeypatch.chdir(tmp_path)
    out = cli("lint", odd.name, "-f", "github").stdout.splitlines()[0]
    assert out.startswith(
        "::error file=odd%2C name%3A 100%25.yaml,line=2,col=5,title=shapecli unknown-layer::"
    )
    assert escape_data("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext: a, b"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


@pytest.mark.slow
def test_the_shipped_configs_lint_clean_except_the_deliberate_mismatch(cli: Cli) -> None:
    doc = cli("lint", str(CONFIGS), "-f", "json").json()
    failing = [Path(f["file"]).name for f in doc["files"] if not f["ok"]]
    assert failing == ["mismatch.yaml"] and doc["summary"]["warnings"] == 1
    # the one warning: sizes inside an MoE's experts that the routing decides are not derived
    (note,) = [p for f in doc["files"] for p in f["problems"] if p["severity"] == "warning"]
    assert note["path"] == "layers.0.1.body.moe" and "? (not derived)" in note["message"]


def test_schema_command_prints_the_schema(cli: Cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.slow
def test_files_checked_in_worker_processes_give_what_one_process_gives(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from shapecli import lint

    forks = []
    real = multiprocessing.get_context

    def recorded(method: str | None = None) -> object:
        forks.append(method)
        return real(method)

    monkeypatch.setattr(multiprocessing, "get_context", recorded)
    small = ("mlp", "partial", "lenet5", "llama-tiny", "mismatch", "resnet18")
    # good, broken, not YAML, no input, and shipped configs: 13 specs
    paths = [str(FIXTURES), *(str(CONFIGS / f"{name}.yaml") for name in small)]
    alone = lint.lint(paths, jobs=1)
    assert forks == []
    shared = lint.lint(paths, jobs=2)
    assert forks == ["fork"] and shared == alone and alone.errors == 6
    one = cli("lint", *paths, "-f", "json", "--jobs", "1")
    assert cli("lint", *paths, "-f", "json", "-j", "3") == one and one.exit_code == 1


def test_workers_only_where_they_pay_and_forking_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    from shapecli import lint

    monkeypatch.setattr(multiprocessing, "get_context", None)  # any use would fail
    assert lint.lint([str(FIXTURES / "good.yaml"), str(CONFIGS / "mlp.yaml")], jobs=8).errors == 0
    monkeypatch.setattr(lint.sys, "platform", "darwin")
    assert lint.lint([str(FIXTURES)], jobs=4).errors == 5  # one process, the same answer


def test_jobs_must_be_a_positive_count(cli: Cli) -> None:
    result = cli("lint", str(FIXTURES / "good.yaml"), "-j", "0")
    assert result.exit_code == 2 and "--jobs" in result.stderr


def test_a_worker_that_dies_is_an_error_not_a_hang(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from shapecli import lint

    real = lint.check_file

    def killed_on_lenet(path: Path, **options: object) -> lint.FileResult:
        if path.name == "lenet5.yaml" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
        return real(path, **options)  # type: ignore[arg-type]

    parent = os.getpid()
    monkeypatch.setattr(lint, "check_file", killed_on_lenet)
    names = ("mlp", "partial", "lenet5", "mismatch", "llama-tiny")
    result = cli("lint", *(str(CONFIGS / f"{name}.yaml") for name in names), "-j", "2")
    assert result.exit_code == 3 and "--jobs 1" in result.stderr


def test_workers_default_to_the_cpus_a_container_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shapecli import lint

    monkeypatch.setattr(lint.os, "sched_getaffinity", lambda pid: set(range(64)))
    limit = tmp_path / "cpu.max"
    monkeypatch.setattr(lint, "CPU_MAX", limit)
    assert lint.default_jobs() == 64  # no cgroup file: the CPUs it may run on
    limit.write_text("max 100000\n")
    assert lint.default_jobs() == 64
    limit.write_text("150000 100000\n")
    assert lint.default_jobs() == 2  # a quota of 1.5 CPUs


def test_a_file_named_twice_is_checked_once(cli: Cli, in_fixtures: None) -> None:
    absolute = str(FIXTURES / "good.yaml")
    out = cli("lint", "good.yaml", "./broken/../good.yaml", absolute, ".").stdout
    assert out.splitlines()[-1] == "7 files checked, 5 errors, 1 warning"


def test_files_are_reported_in_the_order_they_were_named(cli: Cli, in_fixtures: None) -> None:
    doc = cli("lint", "good.yaml", "nope.yaml", "broken/mismatch.yaml", "-f", "json").json()
    assert [f["file"] for f in doc["files"]] == ["good.yaml", "nope.yaml", "broken/mismatch.yaml"]
    assert doc["files"][1]["problems"][0]["code"] == "file-error"


@pytest.mark.parametrize("raised", ["bug", "usage"])
def test_an_error_in_a_worker_is_reported_as_in_one_process(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, raised: str
) -> None:
    """Whatever a file's check raises is that file's problem, in a worker as here: the
    other files are checked all the same, and a bug is exit 3 at the end."""
    from shapecli import lint
    from shapecli.errors import fail

    real = lint.check_file

    def failing_on_lenet(path: Path, **options: object) -> lint.FileResult:
        if path.name == "lenet5.yaml":
            if raised == "bug":
                raise KeyError("a bug")
            raise fail("usage", "refused")
        return real(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(lint, "check_file", failing_on_lenet)
    names = ("mlp", "partial", "lenet5", "mismatch", "llama-tiny")
    paths = [str(CONFIGS / f"{name}.yaml") for name in names]
    alone, shared = cli("lint", *paths, "-j", "1"), cli("lint", *paths, "-j", "2")
    assert alone.exit_code == shared.exit_code == (3 if raised == "bug" else 2)
    assert shared.stdout == alone.stdout and shared.stderr == alone.stderr == ""
    said = (
        "error[internal] internal error: KeyError: 'a bug'"
        if raised == "bug"
        else "error[usage] refused"
    )
    assert f"lenet5.yaml: {said}\n" in shared.stdout
    assert "mismatch.yaml:8:5: error[shape-mismatch]" in shared.stdout  # checked after it
    assert shared.stdout.endswith("5 files checked, 2 errors, 0 warnings\n")
