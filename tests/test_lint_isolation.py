"""One file never stops a lint: a bug met while checking one file is that file's
``internal`` problem (exit 3 once every file is checked), in one process and in workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIGS, Result

Cli = Callable[..., Result]
NAMES = ("mlp", "partial", "lenet5", "mismatch", "llama-tiny")


@pytest.fixture
def bug_in_lenet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dry run of ``lenet5.yaml`` fails as a bug in shapecli's own code would."""
    from shapecli import api

    real = api.inspect

    def inspect(spec: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(getattr(spec, "file", "")).name == "lenet5.yaml":
            raise ZeroDivisionError("a bug in a layer")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(api, "inspect", inspect)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_bug_in_one_file_is_that_files_problem(cli: Cli, bug_in_lenet: None, jobs: str) -> None:
    paths = [str(CONFIGS / f"{name}.yaml") for name in NAMES]
    text = cli("lint", *paths, "-j", jobs)
    doc = cli("lint", *paths, "-j", jobs, "-f", "json").json()
    assert text.exit_code == 3
    by_name = {Path(f["file"]).name: f["problems"] for f in doc["files"]}
    assert list(by_name) == [f"{name}.yaml" for name in NAMES]  # every file was checked
    (bug,) = by_name["lenet5.yaml"]
    assert bug["code"] == "internal" and bug["source"]["file"].endswith("lenet5.yaml")
    assert bug["message"] == "internal error: ZeroDivisionError: a bug in a layer"
    assert "--traceback" in bug["hint"]
    assert [p["code"] for p in by_name["mismatch.yaml"]] == ["shape-mismatch"]
    assert by_name["llama-tiny.yaml"] == [] and doc["summary"]["errors"] == 2
    assert "lenet5.yaml: error[internal] internal error: ZeroDivisionError" in text.stdout
    github = cli("lint", *paths, "-j", jobs, "-f", "github")
    assert github.exit_code == 3 and "::error file=" in github.stdout


def test_the_traceback_of_that_bug_is_shown_when_asked(cli: Cli, bug_in_lenet: None) -> None:
    result = cli("--traceback", "lint", str(CONFIGS / "lenet5.yaml"), str(CONFIGS / "mlp.yaml"))
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "ZeroDivisionError: a bug in a layer" in result.stderr
    assert "Traceback" not in cli("lint", str(CONFIGS / "lenet5.yaml")).stderr
