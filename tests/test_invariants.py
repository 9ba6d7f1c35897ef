"""Properties every shipped config must have: column sums equal printed totals."""

from __future__ import annotations

from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS

GOOD = sorted(p for p in CONFIGS.glob("*.yaml") if p.stem != "mismatch")


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_depth_one_rows_add_up_to_the_total(path: Path) -> None:
    report = shapecli.inspect(path)
    assert report.ok, report.errors
    root = report.rows[0]
    own = sum(p.count or 0 for p in root.params)
    assert root.depth == 0 and root.param_count == report.totals.params
    assert own + sum(r.param_count for r in report.rows if r.depth == 1) == report.totals.params
    assert report.totals.trainable + report.totals.non_trainable == report.totals.params


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_every_row_ran_and_every_entry_has_a_source(path: Path) -> None:
    report = shapecli.inspect(path)
    assert all(r.status == "ok" for r in report.rows if r.type != "ModuleList")  # never called
    assert all(r.source is not None for r in report.rows if r.entry)
