"""The human report: a rich table of rows, a footer of totals, problems on stderr."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.console import to_text
from shapecli.render.problems import problems_text
from shapecli.render.tree import guides, visible_rows
from shapecli.report import Report, Row
from shapecli.untrusted import visible

FAIL_MARK = "✗"


def render(report: Report, options: Options) -> Rendered:
    stdout = _rows_and_totals(report, options) if report.rows else ""
    stderr = problems_text(report, options)
    return Rendered(stdout, stderr)


def _rows_and_totals(report: Report, options: Options) -> str:
    shown = visible_rows(report, options.depth)
    failing = {p.path for p in report.errors if p.code == "shape-mismatch"}
    table = Table(
        title=Text(_title(report)),  # Text, not markup: a name may hold [brackets]
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    table.add_column("Layer", no_wrap=True)
    if options.paths:
        table.add_column("Path", no_wrap=True, style="dim")
    table.add_column("Input", no_wrap=True)
    table.add_column("Output", no_wrap=True)
    table.add_column("Parameters")
    table.add_column("Count", justify="right", no_wrap=True)
    counted = report.totals.flops is not None
    if counted:
        table.add_column("FLOPs", justify="right", no_wrap=True)
    for prefix, (row, _) in zip(guides([level for _, level in shown]), shown, strict=True):
        cells = _cells(prefix, row, row.path in failing and row.status == "failed")
        if options.paths:
            cells = (cells[0], Text(visible(row.path) or "(root)"), *cells[1:])
        if counted:
            cells = (*cells, Text(fmt.count(row.flops) if row.flops else "—"))
        table.add_row(*cells)
    text = to_text(table, options)
    footer = "\n".join(fmt.summary_lines(report, [row for row, _ in shown]))
    return text + "\n" + to_text(Text(footer, style="dim"), options)


def _title(report: Report) -> str:
    name = visible(report.name)
    return f"{name} · {fmt.inputs(report.inputs)}" if report.inputs else name


def _cells(prefix: str, row: Row, failed: bool) -> tuple[Text, ...]:
    style = "bold red" if failed else ""
    layer = Text(prefix, style="dim")
    layer.append(f"{FAIL_MARK} " if failed else "", style=style)
    layer.append(visible(row.label), style=style or ("bold" if row.depth == 0 else ""))
    layer.append(f" ({fmt.type_label(row)}{'*' if row.inferred else ''})", style=style or "cyan")
    if failed:
        output = Text(f"{FAIL_MARK} cannot take it", style=style)
    elif row.status == "failed":
        output = Text("")
    else:
        output = Text(fmt.shapes(row.output_shapes), style="green")
    return (
        layer,
        Text(fmt.shapes(row.input_shapes), style=style),
        output,
        Text(fmt.params(row.params), style="magenta" if not failed else style),
        Text(fmt.count(row.param_count) if row.param_count else "—", style=style),
    )
