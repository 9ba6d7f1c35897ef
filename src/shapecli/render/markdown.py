"""The report as a GitHub-flavoured Markdown table, for PR comments and docs."""

from __future__ import annotations

from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.tree import visible_rows
from shapecli.report import Report


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def render(report: Report, options: Options) -> Rendered:
    lines = []
    if report.rows:
        failing = {p.path for p in report.errors if p.code == "shape-mismatch"}
        lines += [
            f"### {_cell(report.name)}",
            "",
            "| Layer | Type | Input | Output | Parameters | Count |",
            "|---|---|---|---|---|---:|",
        ]
        for row, level in visible_rows(report, options.depth):
            failed = row.path in failing and row.status == "failed"
            name = "&nbsp;&nbsp;" * level + (f"**✗ {row.name}**" if failed else row.name)
            output = "cannot take its input" if failed else fmt.shapes(row.output_shapes)
            lines.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        name,
                        f"`{fmt.type_label(row)}`" + ("\\*" if row.inferred else ""),
                        fmt.shapes(row.input_shapes),
                        output,
                        fmt.params(row.params),
                        fmt.count(row.param_count) if row.param_count else "—",
                    )
                )
                + " |"
            )
        lines += [""] + [
            _cell(line).replace("*", "\\*") + "  " for line in fmt.summary_lines(report)
        ]
    for problem in (*report.errors, *report.warnings):
        lines += ["", "```", *fmt.problem_lines(problem), "```"]
    return Rendered("\n".join(lines).lstrip("\n") + "\n")
