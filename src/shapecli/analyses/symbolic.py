"""Symbolic sizes (``--input Bx3xHxW``): every shape as a formula in the user's names,
and the sizes the model accepts — each checked by concrete runs before it is printed,
what cannot be established said to be not derived (:mod:`shapecli.symbolic`).

Its pass is its own: not one dry run but a run at sample sizes, a run on torch's fake
tensors with the names as sizes, and the concrete runs that check every formula and
claim — so :meth:`Symbolic.run` makes the report, and ``during``/``after`` add nothing
to a dry run. Its options are its fields: the sample sizes of the first run
(``--sample``) and the seconds the checks may take (``--symbolic-budget``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shapecli.analyses.base import Done
from shapecli.inputs import InputSpec
from shapecli.report import Report

if TYPE_CHECKING:
    from shapecli.record import Recorder
    from shapecli.spec.model import Spec


@dataclass(frozen=True)
class Symbolic:
    samples: Mapping[str, int] = field(default_factory=dict)
    budget: float | None = None  # None: the default (shapecli.symbolic.DEFAULT_BUDGET)

    def during(self, recorder: Recorder) -> AbstractContextManager[object] | None:
        return None

    def after(self, done: Done) -> Report:
        return done.report

    def run(self, spec: Spec, inputs: tuple[InputSpec, ...], allow_import: Iterable[str]) -> Report:
        """The report of ``spec`` at ``inputs``, whose sizes are (partly) names."""
        from shapecli.speedups import dynamo_deferred
        from shapecli.symbolic import DEFAULT_BUDGET, inspect_symbolic
        from shapecli.torch_compat import shape_env

        budget = DEFAULT_BUDGET if self.budget is None else self.budget
        with dynamo_deferred():  # fake tensors without the compiler's import
            shape_env.require()
            return inspect_symbolic(spec, inputs, allow_import, samples=self.samples, budget=budget)

    @staticmethod
    def footer(report: Report) -> list[str]:
        return [_line(report)] if report.symbols else []


def _line(report: Report) -> str:
    """What a report with symbolic sizes says about them: formulas, and the sizes the
    model accepts only when they were derived (a failed run claims nothing)."""
    names = ", ".join(report.symbols)
    samples = ", ".join(f"{n} = {v}" for n, v in report.samples)
    if not report.ok:
        return f"Sizes {names}: nothing derived (the model did not run at {samples})"
    if report.constraints is None:
        accepts = "the sizes the model accepts are not derived (see the warnings)"
    elif report.constraints:
        pretty = (c.replace(">=", "≥").replace("<=", "≤") for c in report.constraints)
        accepts = f"the model accepts {', '.join(pretty)}"
    else:
        accepts = "the model accepts any sizes"
    unknown = any(
        d is None for row in report.rows for s in (*row.input_shapes, *row.output_shapes) for d in s
    )
    return (
        f"Sizes {names}: formulas in Python integer arithmetic"
        + ("; ? = not derived (see the warnings)" if unknown else "")
        + f"; {accepts} (each checked by concrete runs; first run at {samples})"
    )
