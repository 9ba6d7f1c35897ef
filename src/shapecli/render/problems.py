"""Problems as text for stderr: the same in every report format.

Without colour this needs no rich (whose import costs more than the rest of a YAML
error's run), so a spec that fails to load is reported as fast as it is read.
"""

from __future__ import annotations

from shapecli.render import Options
from shapecli.render import format as fmt
from shapecli.report import Report


def problems_text(report: Report, options: Options) -> str:
    """Every error and warning: ``file:line:col: severity[code] message`` and details."""
    problems = (*report.errors, *report.warnings)
    if not problems:
        return ""
    if not options.color:
        return "".join(line + "\n" for p in problems for line in fmt.problem_lines(p))
    from rich.text import Text

    from shapecli.render.console import to_text

    text = Text()
    for problem in problems:
        lines = fmt.problem_lines(problem)
        text.append(lines[0] + "\n", style="bold red" if problem.severity == "error" else "yellow")
        for line in lines[1:]:
            text.append(line + "\n", style="dim" if line.lstrip().startswith("torch") else "")
    text.rstrip()
    return to_text(text, options, wrap=False)
