"""What every analysis is (see :mod:`shapecli.analyses`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from shapecli.inputs import InputSpec
from shapecli.report import Report

if TYPE_CHECKING:
    from shapecli.construct import BuiltModel
    from shapecli.record import Recorder


@dataclass(frozen=True)
class Done:
    """A finished dry run, as an analysis's ``after`` sees it: the model it ran (sized
    by the pass), the inputs, the report so far, and whether the pass took shapecli's
    shortcuts (:mod:`shapecli.speedups`)."""

    built: BuiltModel
    inputs: tuple[InputSpec, ...]
    report: Report
    shortcuts: bool = True


class Analysis(Protocol):
    """One analysis (see the module docstring)."""

    def during(self, recorder: Recorder) -> AbstractContextManager[object] | None: ...

    def after(self, done: Done) -> Report: ...

    @staticmethod
    def footer(report: Report) -> list[str]: ...
