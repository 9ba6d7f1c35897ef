"""The hostile-input corpus (``hostile/cases.toml``) through the CLI's entry point, plus
user packages that misbehave. Specs come from pull requests; none of this may produce a
traceback, write anything, or fail without saying where and why.

Every case runs in-process (the same ``run_cli`` the console script calls); a few also
run as real processes, where the process itself is what is tested."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

HOSTILE = Path(__file__).parent / "hostile"
CASES: list[dict[str, Any]] = tomllib.loads((HOSTILE / "cases.toml").read_text())["case"]
GENERATED = {
    "oversized.yaml": b"# " + b"x" * (1 << 20) + b"\nmodel: [ReLU]\n",
    "deep-flow.yaml": b"model: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
}


@dataclass
class Outcome:
    exit: int
    output: str  # stdout and stderr
    left: list[str]  # the files in the folder afterwards


def in_folder(spec: str, data: bytes | None, run: Callable[[Path], tuple[int, str]]) -> Outcome:
    """Run a case in an empty folder holding only its spec; report what it left there."""
    folder = Path(tempfile.mkdtemp(prefix="shapecli-hostile-"))
    try:
        if data is None:
            shutil.copy(HOSTILE / "specs" / spec, folder / spec)
        else:
            (folder / spec).write_bytes(data)
        code, output = run(folder)
        return Outcome(code, output, sorted(p.name for p in folder.iterdir()))
    finally:
        shutil.rmtree(folder)


def run_case(spec: str, args: list[str], data: bytes | None = None) -> Outcome:
    """The case as a real process (``python -m shapecli``), the way a user runs it."""

    def process(folder: Path) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "shapecli", *(a.replace("{spec}", spec) for a in args)],
            cwd=folder, capture_output=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1"},
        )  # fmt: skip
        return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")

    return in_folder(spec, data, process)


def run_in_process(spec: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """The case through the same entry point, in this process (torch is imported once)."""
    from shapecli.cli import run_cli

    def here(folder: Path) -> tuple[int, str]:
        out = io.StringIO()
        with monkeypatch.context() as patch:
            patch.chdir(folder)
            patch.setenv("NO_COLOR", "1")
            patch.delenv("GITHUB_ACTIONS", raising=False)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = run_cli([a.replace("{spec}", spec) for a in args])
        return code, out.getvalue()

    return in_folder(spec, None, here)


def check(case: dict[str, Any], outcome: Outcome) -> None:
    assert outcome.exit == case["exit"], outcome.output
    assert case["says"] in outcome.output, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.left == [case["spec"]], "nothing may be written"
    if "where" in case:
        assert f"{case['spec']}:{case['where']}: " in outcome.output, outcome.output


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert {c["spec"] for c in CASES} == {p.name for p in (HOSTILE / "specs").iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c['spec']}|{' '.join(c.get('args', []))}" for c in CASES]
)
def test_case(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[index]
    check(case, run_in_process(case["spec"], case.get("args", ["inspect", "{spec}"]), monkeypatch))


#: A few cases where the process is the point: what reaches the terminal from a real
#: ``python -m shapecli``, a YAML error that never imports torch, a closed pipe.
PROCESS_CASES = ["tag-python.yaml", "billion-laughs.yaml", "mismatch.yaml", "block-bomb.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", PROCESS_CASES)
def test_case_as_a_process(spec: str) -> None:
    case = next(c for c in CASES if c["spec"] == spec and "args" not in c)
    check(case, run_case(spec, ["inspect", "{spec}"]))


@pytest.mark.parametrize(
    ("name", "says"),
    [("oversized.yaml", "a spec may be at most 1,048,576 bytes"), ("deep-flow.yaml", "nesting")],
)
def test_generated_cases(name: str, says: str) -> None:
    outcome = run_case(name, ["inspect", "{spec}"], GENERATED[name])
    assert outcome.exit == 1 and says in outcome.output and "Traceback" not in outcome.output
    assert f"{name}:1:" in outcome.output


def make_package(root: Path) -> None:
    """A user package with a working layer, a layer whose constructor fails, a
    non-module, and a sibling package that fails at import."""
    (root / "userlayers").mkdir()
    (root / "userlayers" / "__init__.py").write_text(
        "import torch\n"
        "class Scale(torch.nn.Module):\n"
        "    def __init__(self, factor: float = 2.0):\n"
        "        super().__init__()\n"
        "        self.weight = torch.nn.Parameter(torch.ones(3) * factor)\n"
        "    def forward(self, x):\n"
        "        return x * self.weight\n"
        "class Broken(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('no GPU found')\n"
        "def not_a_layer():\n"
        "    return 1\n"
    )
    (root / "explodes").mkdir()
    (root / "explodes" / "__init__.py").write_text("raise ImportError('missing dependency: foo')\n")


@pytest.mark.parametrize(
    ("layer", "allow", "code", "says"),
    [
        ("userlayers.Scale: {factor: 3.0}", "userlayers", 0, "weight 3"),
        ("userlayers.Scale", "", 1, "run with `--allow-import userlayers`"),
        ("userlayers.Broken", "userlayers", 1, "RuntimeError: no GPU found"),
        ("userlayers.not_a_layer", "userlayers", 1, "is not an nn.Module subclass"),
        ("userlayers.Missing", "userlayers", 1, "`userlayers` has no `Missing`\n"),
        ("userlayers.Scal", "userlayers", 1, "`userlayers` has no `Scal` (did you mean `Scale`?)"),
        ("userlayers.not_a_layr", "userlayers", 1, "has no `not_a_layr`\n"),  # only layers
        ("explodes.Layer", "explodes", 1, "ImportError: missing dependency: foo"),
        (
            "userlayers.Scale",
            "user",
            1,
            "run with `--allow-import userlayers`",
        ),  # a prefix is not the package
    ],
)
def test_user_packages(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
    layer: str,
    allow: str,
    code: int,
    says: str,
) -> None:
    """In-process, with the package on sys.path as PYTHONPATH would put it (the process
    case of ``--allow-import`` is in test_process.py)."""
    make_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"input: 2x3\nmodel:\n  - {layer}\n")
    try:
        done = cli("inspect", str(spec), *(["--allow-import", allow] if allow else []))
    finally:
        for name in ("userlayers", "explodes"):
            sys.modules.pop(name, None)
    assert done.exit_code == code, done.stdout + done.stderr
    assert says in done.stdout + done.stderr and "Traceback" not in done.stderr
