"""Properties every shipped config must have: column sums equal printed totals."""

from __future__ import annotations

from pathlib import Path

import pytest

import shapecli
from conftest import CONFIGS

GOOD = sorted(p for p in CONFIGS.glob("*.yaml") if p.stem != "mismatch")


@pytest.mark.slow
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
    status = {r.path: r.status for r in report.rows}
    children: dict[str, list[str]] = {}
    for r in report.rows:
        if r.path:
            children.setdefault(r.path.rpartition(".")[0], []).append(r.path)

    def ran(row: str) -> bool:
        """It ran, or it only holds layers that did: a container that is never called
        itself (a ModuleList, the list of an MoE's experts, which the MoE calls one by
        one)."""
        return status[row] == "ok" or (bool(children.get(row)) and all(map(ran, children[row])))

    assert all(ran(r.path) for r in report.rows)
    assert all(r.source is not None for r in report.rows if r.entry)
