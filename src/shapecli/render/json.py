"""The report as exactly one JSON document on stdout — errors included, nothing else."""

from __future__ import annotations

import json
from dataclasses import replace

from shapecli.render import Options, Rendered
from shapecli.report import Report, to_json


def render(report: Report, options: Options) -> Rendered:
    """Every module of the tree as a row; ``--depth N`` keeps the rows down to depth N."""
    if options.depth is not None:
        report = replace(report, rows=tuple(r for r in report.rows if r.depth <= options.depth))
    return Rendered(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n")
