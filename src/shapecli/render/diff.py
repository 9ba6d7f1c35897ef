"""``shapecli diff`` output: a table for people, JSON for scripts, Markdown for a pull
request comment. Each is a pure function of a :class:`~shapecli.diff.Diff`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from shapecli.diff import Change, Diff, own_count, params_text
from shapecli.render import Options, Rendered
from shapecli.render.console import to_text
from shapecli.render.format import shapes
from shapecli.render.markdown import code, literal
from shapecli.render.table import titled_table
from shapecli.report import Report, Row
from shapecli.untrusted import json_text, visible

DIFF_SCHEMA_VERSION = 1
MARKS = {"same": "=", "changed": "~", "added": "+", "removed": "-", "unseen": "·"}
ARGUMENTS = "Arguments, ties"
STYLES = {"same": "dim", "changed": "yellow", "added": "green", "removed": "red", "unseen": "dim"}


def _shown(result: Diff, options: Options) -> list[Change]:
    """Every unit with ``--all``, else only those that differ (or changed type)."""
    return [c for c in result.changes if options.every or c.status != "same" or c.differences]


def _label(row: Row) -> str:
    """The path (and which call, for a module's later call) and the type."""
    call = f", call {row.call + 1}" if row.call else ""
    return f"{row.path or row.name} ({row.type}{call})"


def _side_by_side(a: str, b: str) -> str:
    return a if a == b else f"{a} → {b}"


def _cells(
    change: Change, user: Callable[[str], str], ours: Callable[[str], str]
) -> tuple[str, ...]:
    """The cells of one change, each part shown by ``user`` (text from the models) or
    ``ours`` (shapes and counts), as the format needs; the last, argument and tie
    changes."""
    a, b = change.a, change.b

    def both(left: str, right: str, show: Callable[[str], str]) -> str:
        if a and b:
            return show(left) if left == right else f"{show(left)} → {show(right)}"
        return show(left or right) if left or right else ""

    out_a = shapes(a.output_shapes) if a else ""
    out_b = shapes(b.output_shapes) if b else ""
    delta = change.delta
    changed = "; ".join(d.text for d in change.differences if d.kind in ("arguments", "ties"))
    return (
        user(_label(a)) if a else "—",
        user(_label(b)) if b else "—",
        both(out_a, out_b, ours),
        both(_params(a), _params(b), user),
        ours(f"{delta:+,}") if delta else "",
        user(changed) if changed else "",
    )


def _rows(
    changes: list[Change], user: Callable[[str], str], ours: Callable[[str], str]
) -> list[tuple[str, ...]]:
    """Each change's cells; the last column (argument and tie changes) only when one of
    them has any."""
    rows = [_cells(change, user, ours) for change in changes]
    return rows if any(row[-1] for row in rows) else [row[:-1] for row in rows]


def _params(row: Row | None) -> str:
    """The parameters a row owns (a tied one is shown where it is owned)."""
    own = tuple(p for p in row.params if not p.shared_with) if row is not None else ()
    return params_text(own) if own else ""


def summary(result: Diff) -> str:
    a, b = result.a.totals.params, result.b.totals.params
    counts = ", ".join(
        f"{result.count(status)} {status}" for status in ("changed", "added", "removed")
    )
    if unseen := result.count("unseen"):
        counts += f", {unseen} parameter-free unseen in the Python model"
    out_a, out_b = shapes(Diff.output(result.a)), shapes(Diff.output(result.b))
    output = f" · output {_side_by_side(out_a, out_b)}"
    if result.inputs_differ:
        output += f" · inputs {_side_by_side(_inputs(result.a), _inputs(result.b))}"
    verdict = "the models differ" if result.differs else "no differences found"
    return f"Parameters: {a:,} → {b:,} ({b - a:+,}){output} · {counts}: {verdict}"


def _inputs(report: Report) -> str:
    return ", ".join(str(i) for i in report.inputs) or "none"


def _given(result: Diff, options: Options) -> tuple[str, str]:
    """What each side is called: what the user passed, else the report's spec."""
    return options.sides or (result.a.spec, result.b.spec)


def _title(report: Report, given: str) -> str:
    name = visible(report.name)
    return name if report.name == given else f"{name} ({visible(given)})"


def render_table(result: Diff, options: Options) -> Rendered:
    given_a, given_b = _given(result, options)
    table = titled_table(f"{_title(result.a, given_a)} → {_title(result.b, given_b)}")
    for column in ("", "A", "B", "Output", "Parameters"):
        table.add_column(column, no_wrap=column != "Parameters")
    table.add_column("Δ params", justify="right", no_wrap=True)
    shown = _shown(result, options)
    rows = _rows(shown, visible, str)
    if rows and len(rows[0]) > 5:
        table.add_column(ARGUMENTS)
    for change, cells in zip(shown, rows, strict=True):
        style = STYLES[change.status]
        table.add_row(Text(MARKS[change.status], style=style), *(Text(c) for c in cells))
    text = to_text(table, options) if shown else ""
    return Rendered(text + to_text(Text(summary(result), style="bold"), options))


def render_markdown(result: Diff, options: Options) -> Rendered:
    """A pull-request comment: what the models hold as code spans, shapecli's own text
    escaped (see :mod:`shapecli.render.markdown`)."""
    given_a, given_b = _given(result, options)
    lines = [f"### {code(given_a, cell=False)} → {code(given_b, cell=False)}", ""]
    changes = _shown(result, options)
    if changes:
        rows = _rows(changes, code, literal)
        more = len(rows[0]) > 5
        lines += [
            "| | A | B | Output | Parameters | Δ params |" + (f" {ARGUMENTS} |" if more else ""),
            "|---|---|---|---|---|---:|" + ("---|" if more else ""),
        ]
        for change, cells in zip(changes, rows, strict=True):
            lines.append("| " + " | ".join(c or " " for c in (MARKS[change.status], *cells)) + " |")
        lines.append("")
    lines.append(literal(summary(result)))
    return Rendered("\n".join(lines) + "\n")


def render_json(result: Diff, options: Options) -> Rendered:
    def side(row: Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {
            "path": row.path,
            "call": row.call,
            "type": row.type,
            "arguments": dict(row.arguments),
            "output_shapes": [list(s) for s in row.output_shapes],
            "params": [
                {"name": p.name, "shape": list(p.shape) if p.shape else None}
                for p in row.params
                if not p.shared_with
            ],
            "param_count": own_count(row),
        }

    def model(report: Report) -> dict[str, Any]:
        return {
            "name": report.name,
            "spec": report.spec,
            "inputs": [{"shape": list(i.dims), "dtype": i.dtype} for i in report.inputs],
            "params": report.totals.params,
            "output_shapes": [list(s) for s in Diff.output(report)],
        }

    doc = {
        "schema_version": DIFF_SCHEMA_VERSION,
        "differ": result.differs,
        "a": model(result.a),
        "b": model(result.b),
        "summary": {s: result.count(s) for s in ("same", "changed", "added", "removed", "unseen")}
        | {"param_delta": result.b.totals.params - result.a.totals.params},
        "changes": [
            {
                "status": c.status,
                "a": side(c.a),
                "b": side(c.b),
                "differences": [d.text for d in c.differences],
                "param_delta": c.delta,
            }
            for c in result.changes
        ],
    }
    return Rendered(json_text(doc) + "\n")
