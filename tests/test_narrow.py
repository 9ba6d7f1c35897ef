"""A terminal 80 columns wide: numbers and shapes are printed whole, whatever is left
out to make room, and one footer line says what was."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

from conftest import CONFIGS, ROOT

NUMBER_OR_SHAPE = re.compile(r"\d[\d,×]*")
COUNTS = re.compile(r"\d{1,3}(?:,\d{3})+")


def on_a_terminal(*args: str, columns: int) -> str:
    """What ``shapecli ARGS`` prints to a terminal ``columns`` wide (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "shapecli", *args],
        cwd=ROOT,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side is closed: all was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flops", "left_out", "wrapped"),
    [((), "Parameters", "Input, Output"), (("--flops",), "Parameters, Input", None)],
)
def test_bert_at_80_columns_cuts_no_number_and_no_shape(
    flops: tuple[str, ...], left_out: str, wrapped: str | None
) -> None:
    spec = str(CONFIGS / "bert-base.yaml")
    text = on_a_terminal("inspect", spec, *flops, columns=80)
    wide = on_a_terminal("inspect", spec, *flops, columns=1000)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in "".join(NUMBER_OR_SHAPE.findall(text))
    table, _, footer = text.partition("\n\n")
    # Every number and shape of the full table's kept columns is there, whole.
    for header in ("Output", "Count", *(["FLOPs"] if flops else [])):
        assert header in table.splitlines()[1]
    assert "109,482,240" in table.splitlines()[3]  # the root row's count
    assert footer.splitlines()[-1] == (
        f"At 80 columns, not shown: {left_out}" + (f"; wrapped: {wrapped}" if wrapped else "")
    )
    if flops:
        assert "22,348,431,360" in table.splitlines()[3]
    assert "At 1000 columns" not in wide and "Parameters" in wide.splitlines()[1]
    # Every count and FLOP figure of the wide table, whole, in the narrow one.
    wide_table = wide.partition("\n\n")[0]
    assert COUNTS.findall(table) == COUNTS.findall(wide_table)
