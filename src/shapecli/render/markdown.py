"""The report as a GitHub-flavoured Markdown table, for PR comments and docs.

The document says what the table says — rows, totals, and one quoted line per problem,
so a comment on a failing model says it failed — and, as every format, the full
diagnostics go to stderr.

A pull-request comment is rendered by GitHub, which acts on more than formatting: it
loads the images of ``<img>`` tags, notifies ``@mentions``, links ``#123``. So text from
the model — names, types, paths, parameters, messages, file names — is written as a code
span (:func:`code`), inside which none of that happens; shapecli's own text (shapes,
counts, totals) has its Markdown characters escaped (:func:`literal`).
"""

from __future__ import annotations

import re

from shapecli.render import Options, Rendered
from shapecli.render import format as fmt
from shapecli.render.problems import problems_text
from shapecli.render.tree import visible_rows
from shapecli.report import Report
from shapecli.untrusted import visible

_SPECIAL = re.compile(r"([\\`*_~\[\]<>&|#!])")


def code(text: str, cell: bool = True) -> str:
    """``text`` as a code span: shown exactly as written, its hidden characters made
    visible. In a table ``cell``, ``|`` is escaped as GFM requires even inside a span."""
    text = visible(text)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""  # CommonMark strips one each
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


def literal(text: str) -> str:
    """shapecli's own text with every character that could start Markdown escaped."""
    return _SPECIAL.sub(r"\\\1", text)


def render(report: Report, options: Options) -> Rendered:
    lines = []
    if report.rows:
        failing = {p.path for p in report.errors if p.code == "shape-mismatch"}
        inputs = f" · {literal(fmt.inputs(report.inputs))}" if report.inputs else ""
        shown = visible_rows(report, options.depth)
        counted = fmt.flops_counted(report)
        lines += [
            f"### {code(report.name, cell=False)}{inputs}",
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
            name = f"**✗ {code(row.label)}**" if failed else code(row.label)
            output = "cannot take its input" if failed else fmt.shapes(row.output_shapes)
            cells = (
                "&nbsp;&nbsp;" * level + name,
                *([code(row.path) if row.path else "(root)"] if options.paths else []),
                code(fmt.type_label(row)) + ("\\*" if row.inferred else ""),
                literal(fmt.row_inputs(report, row)),
                literal(output),
                code(fmt.params(row.params)),
                fmt.count(row.param_count) if row.param_count else "—",
                *([fmt.flops(row)] if counted else []),
            )
            lines.append("| " + " | ".join(c or " " for c in cells) + " |")
        summary = fmt.summary_lines(report, [row for row, _ in shown])
        lines += [""] + [literal(line) + "  " for line in summary]
    for problem in (*report.errors, *report.warnings):
        where = f" {code(str(problem.source), cell=False)}" if problem.source else ""
        said = code(problem.message, cell=False)
        lines += ["", f"> **{problem.severity}** `{problem.code}`{where}: {said}"]
    return Rendered("\n".join(lines).lstrip("\n") + "\n", problems_text(report, options))
