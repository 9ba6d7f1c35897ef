"""Files that are not what they seem: FIFOs, links to ``/dev/zero``, symlink loops,
symlinks out of the linted folder, saved reports that never end or nest without end.

Each is read the way specs are (regular files only, a size cap) or refused with a
``file-error``, at once: never a hang, an out-of-memory kill, a silent skip, or a message
quoting a file outside the folder under review.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIGS, Result

Cli = Callable[..., Result]
GOOD = "input: 2x3\nmodel:\n  - LazyLinear: 4\n"
SECRET = "secret_token: hunter2\n"  # a mapping: an "unknown key" message would quote it


def unreadable(folder: Path) -> dict[str, str]:
    """Entries with a spec's name that cannot be read as one, and what each is called."""
    os.mkfifo(folder / "fifo.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "dangling.yaml").symlink_to("nowhere.yaml")
    return {
        "fifo.yaml": "is not a regular file",
        "zero.yaml": "is a symlink to a file outside",
        "loop.yaml": "is a symlink loop",
        "dangling.yaml": "is a symlink to a file that does not exist",
    }


@pytest.mark.parametrize("named", ["folder", "glob", "files"])
def test_lint_reports_every_file_it_cannot_read(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: str
) -> None:
    """docs/security.md promises a ``file-error`` for each; they used to be skipped silently
    when found in a folder or by a glob."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "good.yaml").write_text(GOOD)
    says = unreadable(tree)
    monkeypatch.chdir(tmp_path)
    paths = {
        "folder": ["tree"],
        "glob": ["tree/*.yaml"],
        "files": sorted(f"tree/{n}" for n in says),
    }
    result = cli("lint", *paths[named], *(["tree/good.yaml"] if named == "files" else []))
    doc = cli("lint", *paths[named], "-f", "json").json()
    problems = {Path(f["file"]).name: f["problems"] for f in doc["files"]}
    for name, message in says.items():
        assert [p["code"] for p in problems[name]] == ["file-error"], problems
        assert message in problems[name][0]["message"]
        assert f"tree/{name}: error[file-error] {message}" in result.stdout
    assert result.exit_code == 2
    if named != "files":
        assert problems["good.yaml"] == [] and doc["summary"]["files"] == 5


def test_lint_does_not_follow_a_symlink_out_of_the_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret.yaml").write_text(SECRET)
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "model.yaml").write_text(GOOD)
    (tree / "leak.yaml").symlink_to(tmp_path / "secret.yaml")
    (tree / "inside.yaml").symlink_to("real/model.yaml")
    monkeypatch.chdir(tmp_path)
    for paths in (["tree"], ["tree/leak.yaml"], ["tree/*.yaml"], ["tree/leak.yaml", "tree"]):
        result = cli("lint", *paths)
        assert "secret_token" not in result.stdout + result.stderr
        assert "tree/leak.yaml: error[file-error] is a symlink to a file outside" in result.stdout
        assert result.exit_code == 2, result.stdout
    assert cli("lint", "tree/inside.yaml").exit_code == 0  # a link inside the folder is read
    monkeypatch.chdir(tree)
    assert "outside its folder" in cli("lint", "leak.yaml").stdout


def test_inspect_is_not_refused_a_symlink(cli: Cli, tmp_path: Path) -> None:
    """Only lint, which reads what a checkout holds, limits itself to the named folder:
    inspect reads the one file it is given, as docs/security.md says."""
    (tmp_path / "model.yaml").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.yaml").symlink_to(tmp_path / "model.yaml")
    assert cli("inspect", str(tmp_path / "sub" / "link.yaml")).exit_code == 0


# -- saved reports (diff) -------------------------------------------------------------------


def diff_process(folder: Path, a: str, b: str) -> subprocess.CompletedProcess[str]:
    """``shapecli diff A B`` as a process that may not use more than 1 GiB nor hang: what
    an unbounded read of ``/dev/zero`` or a FIFO would do shows as a failure here."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "shapecli", "diff", a, b],
        cwd=folder, capture_output=True, text=True, timeout=60, check=False,
        preexec_fn=limit_memory, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def saved_report(cli: Cli, folder: Path) -> str:
    path = folder / "saved.json"
    path.write_text(cli("inspect", str(CONFIGS / "mlp.yaml"), "-f", "json").stdout)
    return str(path)


def make_side(folder: Path, kind: str) -> tuple[str, str]:
    """A ``.json`` side of ``kind``, and what diff must say about it."""
    side = folder / f"{kind}.json"
    if kind == "fifo":
        os.mkfifo(side)
        return str(side), "is not a regular file"
    if kind == "dev-zero":
        side.symlink_to("/dev/zero")
        return str(side), "is not a regular file"
    if kind == "deep":
        side.write_text("[" * 100_000 + "]" * 100_000)
        return str(side), "nested"  # too deeply to read: a clean refusal, not a RecursionError
    if kind == "huge":
        with side.open("wb") as f:  # sparse: no disk is used
            f.truncate((128 << 20) + 1)
        return str(side), "is larger than 134,217,728 bytes"
    if kind == "latin1":
        side.write_bytes(b'{"name": "caf\xe9"}')
        return str(side), "is not UTF-8 text"
    if kind == "folder":
        side.mkdir()
        return str(side), "is a directory"
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep", "huge", "latin1", "folder"])
def test_a_saved_report_is_read_as_a_spec_is(cli: Cli, tmp_path: Path, kind: str) -> None:
    good = saved_report(cli, tmp_path)
    side, says = make_side(tmp_path, kind)
    for a, b in ((side, good), (good, side)):
        done = diff_process(tmp_path, a, b)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"{side}: error[file-error] " in done.stderr and says in done.stderr
        assert "Traceback" not in done.stderr


def test_a_saved_report_error_is_one_json_document(cli: Cli, tmp_path: Path) -> None:
    side, _ = make_side(tmp_path, "deep")
    result = cli("diff", side, saved_report(cli, tmp_path), "-f", "json")
    doc: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == 2 and doc["errors"][0]["code"] == "file-error"
