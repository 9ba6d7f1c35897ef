"""Which rows a human-facing format shows, and the tree guides that indent them."""

from __future__ import annotations

from shapecli.report import Report, Row


def visible_rows(report: Report, depth: int | None) -> list[Row]:
    """Spec entries by default; with ``depth``, every module down to that depth.

    After a failure, the rows that come after the failing one are left out: the table
    shows what the dry run learned, up to and including the failing row. (A module
    that was never *called* is still shown otherwise: MultiheadAttention uses its
    ``out_proj`` weights without calling it, and they count.)
    """
    rows = list(report.rows)
    failing = [i for i, r in enumerate(rows) if r.status == "failed"]
    if failing:
        rows = rows[: failing[-1] + 1]
    if depth is None:
        return [r for r in rows if r.entry or r.depth == 0]
    return [r for r in rows if r.depth <= depth]


def guides(rows: list[Row]) -> list[str]:
    """``├─ ``/``└─ `` prefixes (with ``│`` continuations) for rows in tree order."""
    prefixes = []
    open_levels: list[bool] = []  # per ancestor level: does it have a later sibling?
    for i, row in enumerate(rows):
        if row.depth == 0:
            prefixes.append("")
            continue
        later = next((r.depth for r in rows[i + 1 :] if r.depth <= row.depth), 0)
        last = later < row.depth
        del open_levels[row.depth - 1 :]
        while len(open_levels) < row.depth - 1:
            open_levels.append(False)
        prefix = "".join("│  " if more else "   " for more in open_levels)
        prefixes.append(prefix + ("└─ " if last else "├─ "))
        open_levels.append(not last)
    return prefixes
