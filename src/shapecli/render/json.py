"""The report as exactly one JSON document on stdout — errors included, nothing else."""

from __future__ import annotations

import json

from shapecli.render import Options, Rendered
from shapecli.report import Report, to_json


def render(report: Report, options: Options) -> Rendered:
    return Rendered(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n")
