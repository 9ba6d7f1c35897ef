"""The documents under ``docs/`` cannot drift: what they quote from the code is the code."""

from __future__ import annotations

import re

from conftest import ROOT

DOCS = ROOT / "docs"


def test_the_worked_example_is_the_file_it_names() -> None:
    """docs/architecture.md walks through an analysis by quoting its whole file."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    quoted = re.findall(r"```python\n# (src/\S+)\n(.*?)```", text, re.S)
    assert quoted, "the worked example is gone"
    for path, code in quoted:
        assert code == (ROOT / path).read_text(encoding="utf-8"), f"{path} changed: quote it again"
