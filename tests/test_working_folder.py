"""``python -m shapecli`` in a folder under review runs no code from that folder.

``python -m`` puts the working folder first on ``sys.path``. A checkout that holds a
``typing.py`` (or a module of any name shapecli imports) would run it, with whatever the
CI job can reach, before shapecli could look at a spec. Each test plants a module for
every name a real run imports, each of which leaves a mark when it runs, and runs
shapecli as a real process in that folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = "input: 2x3\nmodel:\n  - LazyLinear: 4\n  - ReLU\n"
MARK = "open(__file__[:-3] + '.ran', 'w').close()\n"  # builtins only: all else is planted


def run(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=300, check=False, env=env
    )


def imported_by_a_run(folder: Path) -> set[str]:
    """The top-level modules ``python -m shapecli lint`` imports, torch's included."""
    done = run(folder, sys.executable, "-X", "importtime", "-m", "shapecli", "lint", "s.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    names = re.findall(r"^import time:.*\|\s*([\w.]+)$", done.stderr, re.M)
    return {name.split(".")[0] for name in names}


def loaded_before_the_package(folder: Path) -> set[str]:
    """What Python itself imports for ``-m`` before any package's code runs (``runpy``
    and what it needs): no package can keep those from being found in the folder."""
    probe = folder / "probe_of_startup"
    probe.mkdir()
    (probe / "__init__.py").write_text("import sys\nprint(' '.join(sys.modules))\n")
    (probe / "__main__.py").write_text("")
    done = run(folder, sys.executable, "-m", "probe_of_startup")
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in done.stdout.split()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], set[str]]:
    """A folder with a spec and a marking module for every name a run imports but
    those Python imports before shapecli gets control; the planted names, and those."""
    folder = tmp_path_factory.mktemp("checkout")
    (folder / "s.yaml").write_text(SPEC)
    names = imported_by_a_run(folder) - set(sys.builtin_module_names) - {"shapecli"}
    early = loaded_before_the_package(folder)
    names -= early
    for name in names:
        (folder / f"{name}.py").write_text(MARK)
    assert {"__future__", "typing", "pathlib", "yaml", "torch"} <= names
    return folder, names, early


def ran(folder: Path) -> list[str]:
    """The planted modules that ran (and forget them, for the next run)."""
    marks = sorted(folder.glob("*.ran"))
    for mark in marks:
        mark.unlink()
    return [mark.stem for mark in marks]


@pytest.mark.slow
@pytest.mark.process
def test_a_planted_module_runs_where_the_folder_is_on_the_path(
    planted: tuple[Path, set[str], set[str]],
) -> None:
    """The control: the planted modules do run whenever the folder is importable."""
    folder, _, _ = planted
    run(folder, sys.executable, "-c", "import typing")  # -c puts the folder on the path
    assert ran(folder) == ["typing"]


@pytest.mark.slow
@pytest.mark.process
def test_python_m_imports_nothing_from_the_folder_after_python_itself(
    planted: tuple[Path, set[str], set[str]],
) -> None:
    folder, names, _ = planted
    done = run(folder, sys.executable, "-m", "shapecli", "lint", "s.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(folder) == [], f"of {len(names)} planted modules"


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("how", ["python -P -m shapecli", "shapecli"])
def test_the_safe_ways_import_nothing_from_the_folder(
    planted: tuple[Path, set[str], set[str]], how: str
) -> None:
    """What docs/security.md recommends where the folder is not trusted: the console script,
    or ``python -P``; neither puts the folder on the path, so even the modules Python
    imports for ``-m`` stay the standard library's."""
    folder, _, early = planted
    for name in early - set(sys.builtin_module_names):
        (folder / f"{name}.py").write_text(MARK)
    script = Path(sys.executable).parent / "shapecli"
    if how == "shapecli" and not script.exists():
        pytest.skip("the shapecli console script is not installed beside this Python")
    command = [str(script)] if how == "shapecli" else [sys.executable, "-P", "-m", "shapecli"]
    try:
        done = run(folder, *command, "lint", "s.yaml")
    finally:
        for name in early - set(sys.builtin_module_names):
            (folder / f"{name}.py").unlink(missing_ok=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(folder) == []


@pytest.mark.process
def test_another_program_run_with_m_keeps_its_path(tmp_path: Path) -> None:
    """Only ``-m shapecli`` itself takes the folder off the path: a program run with
    ``-m`` that imports shapecli as it starts still imports from its folder."""
    host = tmp_path / "host_program"
    host.mkdir()
    (host / "__init__.py").write_text("import shapecli\n")
    (host / "__main__.py").write_text("import sibling\nprint(sibling.VALUE)\n")
    (tmp_path / "sibling.py").write_text("VALUE = 'found in the folder'\n")
    done = run(tmp_path, sys.executable, "-m", "host_program")
    assert done.returncode == 0 and "found in the folder" in done.stdout, done.stderr
