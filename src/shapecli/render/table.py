"""The human report: a rich table of rows, a footer of totals, problems on stderr."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.console import to_text
from shapecli.render.problems import problems_text
from shapecli.render.tree import guides, visible_rows
from shapecli.report import Report, Row
from shapecli.untrusted import visible


def render(report: Report, options: Options) -> Rendered:
    stdout = _rows_and_totals(report, options) if report.rows else ""
    stderr = problems_text(report, options)
    return Rendered(stdout, stderr)


def _rows_and_totals(report: Report, options: Options) -> str:
    shown = visible_rows(report, options.depth)
    failing = {p.path for p in report.errors if p.code == "shape-mismatch"}
    counted = fmt.flops_counted(report)
    rows = []
    prefixes = guides([level for _, level in shown])
    for prefix, (row, _) in zip(prefixes, shown, strict=True):
        failed = row.path in failing and row.status == "failed"
        cells = _cells(prefix, row, failed, fmt.row_inputs(report, row))
        if options.paths:
            cells["Path"] = Text(visible(row.path) or "(root)")
        if counted:
            cells["FLOPs"] = Text(fmt.flops(row))
        rows.append(cells)
    names = [n for n in COLUMNS if n in (rows[0] if rows else {})]
    fit = fit_columns(names, rows, options.width)
    table = titled_table(fmt.title(report.name, report.inputs))
    for name in fit.kept:
        table.add_column(name, **_column_style(name, fit))
    levels = [level for _, level in shown] + [0]
    for index, cells in enumerate(rows):
        lines = max([_lines(cells[n].plain, fit.widths[n]) for n in fit.wrapped] + [1])
        if lines > 1:  # the tree's lines go on down beside the shapes' next lines
            below = prefixes[index].replace("├─ ", "│  ").replace("└─ ", "   ")
            below += "│" if levels[index + 1] > levels[index] else ""
            cells["Layer"].append("\n" + "\n".join([below] * (lines - 1)), style="dim")
        table.add_row(*(cells[name] for name in fit.kept))
    wide = max(options.width, fit.width) if options.width else None  # never cut: print wider
    text = to_text(table, replace(options, width=wide))
    footer = fmt.summary_lines(report, [row for row, _ in shown])
    if fit.note:
        footer.append(fit.note)
    return text + "\n" + to_text(Text("\n".join(footer), style="dim"), options)


def titled_table(title: str) -> Table:
    """The tables of ``inspect`` and ``diff`` alike: a title as written (Text, not
    markup: a name may hold [brackets]), a rule under the header, no outer edge."""
    return Table(
        title=Text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )


#: The table's columns, left to right.
COLUMNS = ("Layer", "Path", "Input", "Output", "Parameters", "Count", "FLOPs")
#: The columns a narrow terminal may do without, the first left out first. Layer,
#: Output and Count always stay: what each layer is, what it makes, what it weighs.
DROPPABLE = ("Path", "Parameters", "Input", "FLOPs")
#: Of those, the ones left out before a name is shortened or shapes wrapped.
LOW = ("Path", "Parameters")
#: Shapes that may be written on several lines (one shape never is).
WRAPPABLE = ("Input", "Output")
#: The narrowest the Layer column is made before a column is left out (names beyond it
#: end in …; a name is not a number).
LAYER_MIN = 30
#: Between two columns: their padding and the box's blank divider.
GAP = 3


@dataclass(frozen=True)
class Fit:
    """How the table fits a terminal: the columns kept, each one's width (None: its
    natural width), those whose shapes wrap, the total width, and the footer line that
    says what was left out or wrapped (None when nothing was)."""

    kept: list[str]
    widths: dict[str, int]
    wrapped: list[str]
    width: int
    note: str | None


def fit_columns(names: list[str], rows: list[dict[str, Text]], width: int | None) -> Fit:
    """Fit the columns ``names`` of ``rows`` into ``width`` terminal columns, never
    cutting a number or a shape: first leave out columns by :data:`DROPPABLE` order
    until the rest fit at their natural widths, shortening layer names to
    :data:`LAYER_MIN` and writing several shapes of a cell on several lines before the
    Input column goes. What no longer fits after that is printed wider than ``width``."""
    natural = {n: max([cell_len(n)] + [r[n].cell_len for r in rows]) for n in names}
    narrowest = dict(natural)
    narrowest["Layer"] = min(natural["Layer"], LAYER_MIN)
    for name in WRAPPABLE:
        if name in names:
            words = [w for r in rows for w in r[name].plain.split(" ")]
            narrowest[name] = max([cell_len(name)] + [cell_len(w) for w in words])
    kept = list(names)
    dropped: list[str] = []

    def total(columns: list[str], sizes: dict[str, int]) -> int:
        return sum(sizes[n] for n in columns) + GAP * (len(columns) - 1)

    if width is not None:
        for name in DROPPABLE:
            if total(kept, natural if name in LOW else narrowest) <= width:
                break
            if name in kept:
                kept.remove(name)
                dropped.append(name)
    if width is None or total(kept, natural) <= width:
        return Fit(kept, {}, [], total(kept, natural), _note(width, dropped, []))
    widths = {n: natural[n] for n in kept}
    wrapped = []
    for name in ("Layer", *WRAPPABLE):  # give back what is over, a column at a time
        if name in kept:
            over = total(kept, widths) - width
            widths[name] = max(narrowest[name], widths[name] - max(over, 0))
            if name in WRAPPABLE and widths[name] < natural[name]:
                wrapped.append(name)
    return Fit(kept, widths, wrapped, total(kept, widths), _note(width, dropped, wrapped))


def _lines(text: str, width: int) -> int:
    """How many lines ``text`` takes in a column ``width`` wide, wrapped at its spaces
    as rich wraps it (greedily)."""
    lines, used = 1, 0
    for word in text.split(" "):
        size = cell_len(word)
        if used and used + 1 + size > width:
            lines, used = lines + 1, size
        else:
            used += size + (1 if used else 0)
    return lines


def _note(width: int | None, dropped: list[str], wrapped: list[str]) -> str | None:
    """The footer line saying what a width of ``width`` columns left out or wrapped."""
    if not dropped and not wrapped:
        return None
    said = [f"not shown: {', '.join(dropped)}"] if dropped else []
    said += [f"wrapped: {', '.join(wrapped)}"] if wrapped else []
    return f"At {width} columns, {'; '.join(said)}"


def _column_style(name: str, fit: Fit) -> dict[str, Any]:
    """How rich draws column ``name``: the width it was given, wrapped at the spaces
    between shapes, or whole on one line (numbers right-aligned)."""
    style: dict[str, Any] = {"no_wrap": name not in fit.wrapped, "width": fit.widths.get(name)}
    if name == "Path":
        style["style"] = "dim"
    if name in ("Count", "FLOPs"):
        style["justify"] = "right"
    if name == "Layer":
        style["overflow"] = "ellipsis"
    return style


def _cells(prefix: str, row: Row, failed: bool, given: str) -> dict[str, Text]:
    style = "bold red" if failed else ""
    layer = Text(prefix, style="dim")
    layer.append(f"{fmt.FAIL_MARK} " if failed else "", style=style)
    layer.append(visible(row.label), style=style or ("bold" if row.depth == 0 else ""))
    layer.append(f" ({fmt.type_label(row)}{'*' if row.inferred else ''})", style=style or "cyan")
    if failed:
        output = Text(f"{fmt.FAIL_MARK} cannot take it", style=style)
    elif row.status == "failed":
        output = Text("")
    else:
        output = Text(fmt.shapes(row.output_shapes), style="green")
    return {
        "Layer": layer,
        "Input": Text(given, style=style),
        "Output": output,
        "Parameters": Text(fmt.params(row.params), style="magenta" if not failed else style),
        "Count": Text(fmt.count(row.param_count) if row.param_count else "—", style=style),
    }
