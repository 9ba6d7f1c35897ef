"""``--memory``: what one training step on the CPU holds when its backward begins.

Weights, gradients, the optimizer's state and what autograd saves, from one more
observed run in train mode (:func:`shapecli.memory.training_step`: fake CPU tensors,
so torch picks the kernels the CPU would). A model that cannot run in train mode as
declared, or whose step the estimate does not model, gets a ``training-estimate``
warning at the entry to blame, and no training figures: never a guess.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shapecli.analyses.base import Done
from shapecli.errors import Problem
from shapecli.render.units import nbytes
from shapecli.report import MemoryFigures, Report

if TYPE_CHECKING:
    from torch import nn

    from shapecli.construct import BuiltModel
    from shapecli.inputs import InputSpec
    from shapecli.memory import Step
    from shapecli.record import Recorder


@dataclass(frozen=True)
class Training:
    """``optimizer``: whose state is counted (adam, adamw, sgd-momentum, sgd, none)."""

    optimizer: str = "adam"

    def during(self, recorder: Recorder) -> AbstractContextManager[object] | None:
        return None

    def after(self, done: Done) -> Report:
        return self.estimate(done)[0]

    def estimate(self, done: Done) -> tuple[Report, Step | None]:
        """The report with the training figures, and the training step they come from
        (None, and a warning in the report, when it was not estimated)."""
        import contextlib
        import warnings

        from shapecli.dryrun import make_inputs
        from shapecli.memory import training_step
        from shapecli.speedups import lean_meta

        report = done.report
        memory = report.totals.memory
        if report.errors or memory is None:
            return report, None
        # Recurrent layers take torch's own path, not the shape rule: on the fake CPU
        # tensors of the training pass, that reaches the kernel the CPU would run.
        lean = lean_meta(recurrent=False) if done.shortcuts else contextlib.nullcontext()
        try:
            with lean, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step = training_step(done.built.model, make_inputs(done.inputs))
                _same_for_any_routing(done.built.model, done.inputs, step)
        except Exception as e:  # what a train-mode forward raises is the model's, not ours
            warning = _not_estimated(done.built, e)
            return replace(report, warnings=(*report.warnings, warning)), None
        memory = replace(
            memory,
            gradients=step.gradient_bytes,
            optimizer=self.optimizer,
            optimizer_state=step.optimizer_bytes(self.optimizer),
            saved_for_backward=step.saved,
        )
        return replace(report, totals=replace(report.totals, memory=memory)), step

    @staticmethod
    def footer(report: Report) -> list[str]:
        memory = report.totals.memory
        if memory is None or memory.training_peak is None:
            return []
        return [f"Training memory, estimated ({memory.optimizer}): {figures_sum(memory)}"]


def _same_for_any_routing(model: nn.Module, inputs: tuple[InputSpec, ...], step: Step) -> None:
    """Raise ``NotDerived`` when what autograd saves depends on how a router deals its
    rows: the step again, each routing layer dealing as unevenly as a router can
    (:mod:`shapecli.routing`), must save the same."""
    from shapecli.dryrun import make_inputs
    from shapecli.memory import NotDerived, training_step
    from shapecli.routing import Dealing, named, routes

    if not routes(model):
        return
    dealing = Dealing(model, "packed")
    dealing.install()
    try:
        other = training_step(model, make_inputs(inputs))
    finally:
        dealing.remove()
    if other.saved != step.saved:
        raise NotDerived(
            f"what autograd saves depends on how the router deals the rows inside "
            f"{named(model)} (experts that save different sizes per row)"
        )


def figures_sum(memory: MemoryFigures) -> str:
    """``weights 31.0 KiB + gradients … = 126.3 KiB``: what the training peak adds up."""
    return (
        f"weights {nbytes(memory.params)}"
        f" + gradients {nbytes(memory.gradients or 0)}"
        f" + optimizer state {nbytes(memory.optimizer_state or 0)}"
        f" + saved for backward {nbytes(memory.saved_for_backward or 0)}"
        + (f" + buffers {nbytes(memory.buffers)}" if memory.buffers else "")
        + f" = {nbytes(memory.training_peak or 0)}"
    )


def _not_estimated(built: BuiltModel, error: Exception) -> Problem:
    """The warning for a model whose training step is not estimated, at the entry that
    failed (a BatchNorm over one value per channel) or is not modelled, so the user
    knows which line to look at."""
    from shapecli.diagnose import failing_entry
    from shapecli.errors import foreign_message
    from shapecli.memory import NotDerived

    path = failing_entry(error, built)
    entry = built.entries.get(path) if path is not None else None
    who = f"layer {path} ({entry.display_type})" if entry is not None else "the model"
    if isinstance(error, NotDerived):
        message = f"the training estimate is not derived for {who}: {error}"
        hint = "the other figures stand; train it once on the CPU to measure this one"
    else:
        message = (
            f"the training estimate is missing: in train mode {who} failed: "
            f"{foreign_message(error)}"
        )
        hint = "a layer that needs several values per channel (BatchNorm) may need a larger batch"
    return Problem(
        "training-estimate",
        message,
        source=entry.source if entry is not None else None,
        severity="warning",
        path=path if entry is not None else None,
        layer_type=entry.type if entry is not None else None,
        hint=hint,
    )
