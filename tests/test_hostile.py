"""The hostile-input corpus (``hostile/cases.toml``) through the real CLI, plus user
packages that misbehave. Specs come from pull requests; none of this may produce a
traceback, write anything, or fail without saying where and why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
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
    seconds: float


def run_case(spec: str, args: list[str], data: bytes | None = None) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="shapecli-hostile-"))
    try:
        if data is None:
            shutil.copy(HOSTILE / "specs" / spec, folder / spec)
        else:
            (folder / spec).write_bytes(data)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "shapecli", *(a.replace("{spec}", spec) for a in args)],
            cwd=folder, capture_output=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1"},
        )  # fmt: skip
        seconds = time.perf_counter() - start
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        return Outcome(done.returncode, output, sorted(p.name for p in folder.iterdir()), seconds)
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def outcomes() -> dict[int, Outcome]:
    """Every case at once, a few processes at a time (each one imports torch)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            i: pool.submit(run_case, case["spec"], case.get("args", ["inspect", "{spec}"]))
            for i, case in enumerate(CASES)
        }
        return {i: f.result() for i, f in futures.items()}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert {c["spec"] for c in CASES} == {p.name for p in (HOSTILE / "specs").iterdir()}


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c['spec']}|{' '.join(c.get('args', []))}" for c in CASES]
)
def test_case(outcomes: dict[int, Outcome], index: int) -> None:
    case, outcome = CASES[index], outcomes[index]
    assert outcome.exit == case["exit"], outcome.output
    assert case["says"] in outcome.output, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.left == [case["spec"]], "nothing may be written"
    if "where" in case:
        assert f"{case['spec']}:{case['where']}: " in outcome.output, outcome.output


@pytest.mark.parametrize(
    ("name", "says"),
    [("oversized.yaml", "a spec may be at most 1,048,576 bytes"), ("deep-flow.yaml", "nesting")],
)
def test_generated_cases(name: str, says: str) -> None:
    outcome = run_case(name, ["inspect", "{spec}"], GENERATED[name])
    assert outcome.exit == 1 and says in outcome.output and "Traceback" not in outcome.output
    assert f"{name}:1:" in outcome.output
    assert outcome.seconds < 10  # a YAML error never imports torch


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
        ("userlayers.Missing", "userlayers", 1, "`userlayers` has no `Missing`"),
        ("explodes.Layer", "explodes", 1, "ImportError: missing dependency: foo"),
        (
            "userlayers.Scale",
            "user",
            1,
            "run with `--allow-import userlayers`",
        ),  # a prefix is not the package
    ],
)
def test_user_packages(tmp_path: Path, layer: str, allow: str, code: int, says: str) -> None:
    make_package(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"input: 2x3\nmodel:\n  - {layer}\n")
    args = ["inspect", str(spec), *(["--allow-import", allow] if allow else [])]
    done = subprocess.run(
        [sys.executable, "-m", "shapecli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'src'}"}, check=False,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    assert says in done.stdout + done.stderr and "Traceback" not in done.stderr
