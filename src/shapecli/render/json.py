"""The report as exactly one JSON document on stdout — errors included, nothing else.

Written by :func:`~shapecli.untrusted.json_text`: a character that is not printable (a
name's, a message's) is a ``\\u`` escape, so the document is the same data for a JSON
reader and holds nothing a terminal or a log would act on.
"""

from __future__ import annotations

from dataclasses import replace

from shapecli.errors import Problem
from shapecli.render import Options, Rendered
from shapecli.report import Report, failed_report, to_json
from shapecli.untrusted import json_text


def render(report: Report, options: Options) -> Rendered:
    """Every module of the tree as a row; ``--depth N`` keeps the rows down to depth N."""
    if options.depth is not None:
        report = replace(report, rows=tuple(r for r in report.rows if r.depth <= options.depth))
    return Rendered(json_text(to_json(report)) + "\n")


def failure(problems: tuple[Problem, ...], options: Options) -> Rendered:
    """Nothing was made, only problems: one document, a report that holds them."""
    return render(failed_report("", "", (), *problems), options)
