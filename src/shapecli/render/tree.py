"""Which rows a human-facing format shows, and the tree guides that indent them."""

from __future__ import annotations

from dataclasses import replace

from shapecli.graph import rows_up_to_failure, within
from shapecli.report import Report, Row, copies_label


def visible_rows(report: Report, depth: int | None) -> list[tuple[Row, int]]:
    """The rows a human-facing format shows, each with its level in the shown tree.

    Spec entries by default; with ``depth``, every module down to that depth. The level
    counts *shown* ancestors, so a hidden container never leaves a gap in the tree.
    After a failure, the rows that come after the failing one are left out: the table
    shows what the dry run learned, up to and including the failing row. (A module
    that was never *called* is still shown otherwise: MultiheadAttention uses its
    ``out_proj`` weights without calling it, and they count.)
    """
    rows = rows_up_to_failure(report)
    if depth is None:
        rows = _collapse_copies([r for r in rows if r.entry or r.depth == 0])
    else:
        rows = [r for r in rows if r.depth <= depth]
    shown: list[str] = []  # paths of the shown ancestors of the current row
    levels = []
    for row in rows:
        while shown and not within(row.path, shown[-1]):
            shown.pop()
        levels.append(len(shown))
        shown.append(row.path)
    return list(zip(rows, levels, strict=True))


def _collapse_copies(rows: list[Row]) -> list[Row]:
    """Runs of repeat copies that did what the first copy did become one row:
    ``1…79 (decoder ×79, as 0)``. ``--depth`` and JSON still show every copy.

    Every number of a collapsed row is the total of all the copies it stands for (its
    parameter count and its FLOPs), so the rows of a list still add up to the row
    above them; its shapes are each copy's, which are all the same."""
    out: list[Row] = []
    run: list[Row] = []

    def flush() -> None:
        if not run:
            return
        name, type_ = copies_label(run)
        unknown = any(r.flops is None for r in run)  # FLOPs that were not counted
        flops = None if unknown else sum(r.flops or 0 for r in run)
        param_count = sum(r.param_count for r in run)
        out.append(
            replace(run[0], name=name, type=type_, params=(), param_count=param_count, flops=flops)
        )
        run.clear()

    skip_under: str | None = None
    for row in rows:
        if skip_under is not None and row.path.startswith(skip_under + "."):
            continue  # inside a collapsed copy
        skip_under = None
        if row.same_as is not None:
            if run and row.path.rpartition(".")[0] != run[-1].path.rpartition(".")[0]:
                flush()
            run.append(row)
            skip_under = row.path
            continue
        flush()
        out.append(row)
    flush()
    return out


def guides(levels: list[int]) -> list[str]:
    """``├─ ``/``└─ `` prefixes (with ``│`` continuations) for rows at these levels."""
    prefixes = []
    open_levels: list[bool] = []  # per ancestor level: does it have a later sibling?
    for i, level in enumerate(levels):
        if level == 0:
            prefixes.append("")
            continue
        later = next((d for d in levels[i + 1 :] if d <= level), 0)
        last = later < level
        del open_levels[level - 1 :]
        while len(open_levels) < level - 1:
            open_levels.append(False)
        prefix = "".join("│  " if more else "   " for more in open_levels)
        prefixes.append(prefix + ("└─ " if last else "├─ "))
        open_levels.append(not last)
    return prefixes
