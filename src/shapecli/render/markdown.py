"""The report as a GitHub-flavoured Markdown table, for PR comments and docs.

The document says what the table says — rows, totals, and one quoted line per problem,
so a comment on a failing model says it failed — and, as every format, the full
diagnostics go to stderr.
"""

from __future__ import annotations

from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.problems import problems_text
from shapecli.render.tree import visible_rows
from shapecli.report import Report


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def render(report: Report, options: Options) -> Rendered:
    lines = []
    if report.rows:
        failing = {p.path for p in report.errors if p.code == "shape-mismatch"}
        title = f"{report.name} · {fmt.inputs(report.inputs)}" if report.inputs else report.name
        shown = visible_rows(report, options.depth)
        counted = report.totals.flops is not None
        lines += [
            f"### {_cell(title)}",
            "",
            "| Layer | " + ("Path | " if options.paths else "") + "Type | Input | Output | "
            "Parameters | Count |" + (" FLOPs |" if counted else ""),
            "|---|"
            + ("---|" if options.paths else "")
            + "---|---|---|---|---:|"
            + ("---:|" if counted else ""),
        ]
        for row, level in shown:
            failed = row.path in failing and row.status == "failed"
            name = "&nbsp;&nbsp;" * level + (f"**✗ {row.label}**" if failed else row.label)
            output = "cannot take its input" if failed else fmt.shapes(row.output_shapes)
            cells = (
                name,
                *([f"`{row.path}`" if row.path else "(root)"] if options.paths else []),
                f"`{fmt.type_label(row)}`" + ("\\*" if row.inferred else ""),
                fmt.shapes(row.input_shapes),
                output,
                fmt.params(row.params),
                fmt.count(row.param_count) if row.param_count else "—",
                *([fmt.count(row.flops) if row.flops else "—"] if counted else []),
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        summary = fmt.summary_lines(report, [row for row, _ in shown])
        lines += [""] + [_cell(line).replace("*", "\\*") + "  " for line in summary]
    for problem in (*report.errors, *report.warnings):
        where = f" `{problem.source}`" if problem.source else ""
        lines += ["", f"> **{problem.severity}** `{problem.code}`{where}: {_cell(problem.message)}"]
    return Rendered("\n".join(lines).lstrip("\n") + "\n", problems_text(report, options))
