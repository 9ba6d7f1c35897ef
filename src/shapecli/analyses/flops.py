"""``--flops``: every op of the dry run counted by torch's own ``FlopCounterMode``.

The pass runs inside the counter; the recorder reads its running total when each call
begins and ends, so every row gets the FLOPs made during its call (its submodules'
included), and the model's total is the root's. The convention is torch's: 2 ×
multiply-adds, attention included. What a shortcut answered without running (the
recurrent shape rule) is added as torch would have counted it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shapecli.analyses.base import Done
from shapecli.render.units import count_and_si
from shapecli.report import Report

if TYPE_CHECKING:
    from shapecli.record import Recorder


@dataclass(frozen=True)
class Flops:
    def during(self, recorder: Recorder) -> AbstractContextManager[object]:
        from torch.utils.flop_counter import FlopCounterMode  # before the lean block

        from shapecli.speedups import recurrent_flops

        counter = FlopCounterMode(display=False)
        before = recurrent_flops()
        recorder.flop_total = lambda: counter.get_total_flops() + recurrent_flops() - before
        return counter

    def after(self, done: Done) -> Report:
        report = done.report
        root = next((r for r in report.rows if r.path == "" and r.call == 0), None)
        flops = root.flops if root is not None else None
        return replace(report, totals=replace(report.totals, flops=flops))

    @staticmethod
    def footer(report: Report) -> list[str]:
        flops = report.totals.flops
        if flops is None:  # not counted, or counted in rows but not derived in total
            counted_in_rows = any(r.flops is not None for r in report.rows)
            return ["FLOPs: not derived (see the warnings)"] if counted_in_rows else []
        counted = "(2 × multiply-adds, as torch counts them)"
        return [f"FLOPs: {count_and_si(flops)} in one forward pass {counted}"]
