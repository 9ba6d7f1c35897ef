"""Shared fixtures: the CLI in-process and as a real process, golden files, paths.

Golden files hold rendered output byte for byte. ``pytest --update-golden`` rewrites
the ones whose output changed, lists them at the end of the run, and fails each test that
rewrote one: a changed golden file is a change of behaviour to review (``git diff
tests/golden``), never a silent pass.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden files from current output"
    )


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``shapecli ARGS`` in-process, through the same entry as the console script
    (torch is imported once for the whole session)."""
    from shapecli.cli import run_cli

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)

    def run(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli(list(args))
        return Result(code, out.getvalue(), err.getvalue())

    return run


def run_process(
    *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shapecli ARGS`` as a real process, the way a user would."""
    return subprocess.run(
        [sys.executable, "-m", "shapecli", *args],
        capture_output=True,
        text=True,
        cwd=kwargs.pop("cwd", ROOT),
        env={**os.environ, "NO_COLOR": "", **(env or {})},
        timeout=120,
        check=False,
        **kwargs,
    )


_REWRITTEN = pytest.StashKey[list[str]]()


def _changed_lines(old: str, new: str) -> int:
    """How many lines a rewrite adds or removes (the figure the run's summary lists)."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return sum(
        (i2 - i1) + (j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with ``tests/golden/NAME`` (or, with --update-golden, rewrite it when
    it changed and fail the test, so the change is listed and reviewed)."""
    update = request.config.getoption("--update-golden")
    rewritten = request.config.stash.setdefault(_REWRITTEN, [])

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if update and text != old:
            path.write_text(text, encoding="utf-8")
            what = "new" if old is None else f"{_changed_lines(old, text)} lines changed"
            rewritten.append(f"tests/golden/{name} ({what})")
            pytest.fail(f"rewrote tests/golden/{name} ({what}): review `git diff tests/golden`")
        assert old is not None, f"missing golden file {path}; run pytest --update-golden"
        assert text == old, f"output differs from {path}"

    return check


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """After an --update-golden run, list every golden file it rewrote."""
    rewritten = config.stash.get(_REWRITTEN, [])
    if rewritten:
        terminalreporter.section("golden files rewritten")
        for line in rewritten:
            terminalreporter.write_line(line)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a spec into a temporary folder and return its path."""

    def make(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return make


def _hypothesis_profiles() -> None:
    """``ci`` (the default): a fixed, reproducible budget. ``HYPOTHESIS_PROFILE=fuzz``
    for a long random run on a developer's machine."""
    from hypothesis import HealthCheck, settings

    # The `cli` fixture runs the app and keeps no state, so sharing it across examples is fine.
    quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    common = {"deadline": None, "suppress_health_check": quiet}
    settings.register_profile("ci", max_examples=60, derandomize=True, **common)
    settings.register_profile("fuzz", max_examples=2000, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
