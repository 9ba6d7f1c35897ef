"""``inspect --watch``, as a user runs it: a real process, real saves, then Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SPEC = "input: 2x4\nimports: [watched_layers]\nmodel:\n  - Linear: [4, 8]\n  - {extra}watched_layers.Head\n"
LAYERS = "from torch import nn\n\nclass Head(nn.Linear):\n    def __init__(self):\n        super().__init__(8, {out})\n"


@pytest.mark.process
@pytest.mark.slow
def test_watch_checks_again_on_every_save_survives_a_broken_one_and_ends_on_ctrl_c(
    tmp_path: Path,
) -> None:
    spec, layers = tmp_path / "s.yaml", tmp_path / "watched_layers.py"
    spec.write_text(SPEC.format(extra=""))
    layers.write_text(LAYERS.format(out=3))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "shapecli", "inspect", "s.yaml", "--watch",
             "--allow-import", "watched_layers"],
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(tmp_path), "NO_COLOR": ""},
        )  # fmt: skip
    try:

        def checked(times: int) -> None:
            """Wait until the report has been printed ``times`` times in all."""
            deadline = time.monotonic() + 60
            while err.read_text().count("for changes; Ctrl-C to stop") < times:
                assert process.poll() is None, err.read_text()
                assert time.monotonic() < deadline, out.read_text() + err.read_text()
                time.sleep(0.02)

        checked(1)
        assert "watching s.yaml and 1 Python file for changes" in err.read_text()
        spec.write_text(SPEC.format(extra="ReLU\n  - "))
        checked(2)
        spec.write_text("input: 2x4\nmodel:\n  - Linear: [4, 8\n")  # saved half-way
        checked(3)
        assert "s.yaml:3:18: error[yaml-syntax]" in err.read_text()  # where the text ended
        spec.write_text(SPEC.format(extra=""))
        checked(4)
        layers.write_text(LAYERS.format(out=5))  # a layer's own file, imported afresh
        checked(5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reports = out.read_text().split("──── ")
    assert len(reports) == 5
    assert "├─ 1 (ReLU)" not in reports[0] and "├─ 1 (ReLU)" in reports[1]
    assert reports[1].startswith("s.yaml changed: checked again ────")
    assert "Total params" not in reports[2]  # the broken save: its error is on stderr
    assert "2×8     2×3" in reports[3] and "2×8     2×5" in reports[4]
    assert reports[4].startswith("watched_layers.py changed: checked again ────")
    assert "Traceback" not in err.read_text()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_is_cleared_between_reports_and_a_pipe_gets_a_separator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shapecli.watch import CLEAR, _between_runs

    terminal, pipe = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    _between_runs([Path("s.yaml")])
    monkeypatch.setattr(sys, "stdout", pipe)
    _between_runs([Path("s.yaml")])
    assert terminal.getvalue() == CLEAR == "\x1b[2J\x1b[H"
    assert pipe.getvalue() == "\n──── s.yaml changed: checked again ────\n\n"


def test_json_reports_on_a_pipe_stay_a_stream_of_documents(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inspect -f json --watch | jq …`: the separator goes to stderr, stdout holds only
    the reports."""
    from shapecli.watch import _between_runs

    _between_runs([Path("s.yaml")], documents=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "\n──── s.yaml changed: checked again ────\n\n"
