"""Symbolic sizes against concrete runs, over random layer stacks (``tests/stacks.py``).

For each stack: inspect it with symbolic sizes, then run it concretely at sizes drawn
apart from the samples. Wherever the model runs, every size the report derived (a
number or a formula) must be the size that run saw; and the accepted sizes, where
derived, must say exactly which runs work. A report that failed must claim nothing.
The example count is small and fixed (derandomized), so this runs in CI.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapecli
from shapecli.report import Report
from shapecli.spec.expressions import compile_expression
from shapecli.spec.parse import parse_spec
from stacks import Stack, concrete, stacks

#: The largest size drawn for each kind of symbol.
UPPER = {"B": 3, "H": 70, "W": 70, "T": 90, "S": 9}


def derived(dim: int | str | None, sizes: dict[str, int]) -> object:
    """A derived size at ``sizes`` (None: not derived)."""
    if isinstance(dim, str):
        return compile_expression(dim, limit=None, conditional=True)(sizes)
    return dim


def check(report: Report, stack: Stack, sizes: dict[str, int]) -> None:
    """The report's derived sizes and claim against a concrete run at ``sizes``."""
    run = shapecli.inspect(parse_spec(stack.spec, "stack.yaml"), input=concrete(stack, sizes))
    if report.constraints is not None:
        claimed = all(compile_expression(c)(sizes) for c in report.constraints)
        assert claimed == run.ok, (stack.spec, report.constraints, sizes, run.errors)
    if not run.ok:
        return
    seen = {row.path: row for row in run.rows}
    for row in report.rows:
        real = seen[row.path]
        for mine, theirs in (
            (row.input_shapes, real.input_shapes),
            (row.output_shapes, real.output_shapes),
        ):
            assert len(mine) == len(theirs), (row.path, stack.spec)
            for shape, truth in zip(mine, theirs, strict=True):
                at = tuple(derived(d, sizes) for d in shape)
                assert all(a is None or a == t for a, t in zip(at, truth, strict=True)), (
                    stack.spec,
                    row.path,
                    shape,
                    sizes,
                    truth,
                )


@pytest.mark.slow
@settings(max_examples=10)
@given(stack=stacks(), data=st.data())
def test_symbolic_sizes_agree_with_concrete_runs(stack: Stack, data: st.DataObject) -> None:
    report = shapecli.inspect(parse_spec(stack.spec, "stack.yaml"), input=stack.input)
    if not report.ok:
        assert report.constraints is None  # a failed run claims nothing
        return
    for _ in range(5):
        sizes = {
            name: data.draw(st.integers(1, UPPER.get(name, 64)), label=name)
            for name in report.symbols
        }
        check(report, stack, sizes)
