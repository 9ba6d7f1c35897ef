"""Analyses: what a dry run measures besides shapes and counts, one module each.

Like a yamllint rule, an analysis is one small class in one module, which says

* ``during(recorder)`` — a torch mode the dry run's own pass runs in (a FLOP counter
  that the recorder reads per call), or None;
* ``after(done)`` — what it works out once the pass is over (the training estimate
  makes one more observed run), written into the report it returns;
* ``footer(report)`` — its lines under the table, from the report alone, so a saved
  report shows them too (no torch here: the renderers call it).

The dry run is handed the analyses asked for (``inspect --flops --memory``); their
options are their fields. :data:`ANALYSES` lists every kind, in footer order. Adding
one is a module and a line there (``docs/architecture.md`` walks through one).
"""

from __future__ import annotations

from collections.abc import Sequence

from shapecli.analyses.base import Analysis, Done
from shapecli.analyses.flops import Flops
from shapecli.analyses.sharding import Sharding
from shapecli.analyses.symbolic import Symbolic
from shapecli.analyses.training import Training
from shapecli.report import Report

__all__ = [
    "ANALYSES",
    "Analysis",
    "Done",
    "Flops",
    "Sharding",
    "Symbolic",
    "Training",
    "footer_lines",
    "run_after",
]

#: Every kind of analysis, in the order their footer lines are printed.
ANALYSES: tuple[type[Analysis], ...] = (Symbolic, Flops, Training, Sharding)


def footer_lines(report: Report) -> list[str]:
    """What every analysis says under the table (nothing for one not asked for)."""
    return [line for kind in ANALYSES for line in kind.footer(report)]


def run_after(analyses: Sequence[Analysis], done: Done) -> Report:
    """Each analysis's ``after``, in turn, on the report the one before returned."""
    report = done.report
    for analysis in analyses:
        report = analysis.after(Done(done.built, done.inputs, report, done.shortcuts))
    return report
