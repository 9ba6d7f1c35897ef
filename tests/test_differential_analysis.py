"""FLOPs and the training estimate against real torch, over random layer stacks
(``tests/stacks.py``).

For each stack that runs at its own input: build it with real weights on the CPU, count
one real forward pass with ``FlopCounterMode`` and take one real training step
(``tests/realtorch.py``). shapecli's FLOPs — the total, and each row of a module call —
must be the count torch gives that call, or not derived; its training figures (saved
for backward, gradients, the optimizer's state, and the peak they add up to) must be
the bytes the real step holds, as the README claims, or not derived. A stack that
fails at its own input is in ``test_differential_symbolic``'s hands. The example count
is small and fixed (derandomized), so this runs in CI; a failure prints the spec.
"""

from __future__ import annotations

from hypothesis import event, example, given, settings

import shapecli
from realtorch import Figures, measure
from shapecli.report import Report
from shapecli.spec.parse import parse_spec
from stacks import Stack, TrainingStack, stacks, training_stacks


def check_flops(
    report: Report, real: Figures, calls: dict[tuple[str, int], int], where: str
) -> None:
    """The total and every row of a module call: torch's count, or not derived."""
    assert report.totals.flops in (None, real.flops), (
        f"FLOPs {report.totals.flops} != {real.flops}{where}"
    )
    for row in report.rows:
        if row.flops is None:
            continue
        count = calls.get((row.path, row.call))
        assert count is not None, f"row {row.path!r} call {row.call}: torch saw no such call{where}"
        assert row.flops == count, f"row {row.path!r}: FLOPs {row.flops} != {count}{where}"


def check_memory(report: Report, real: Figures, where: str) -> None:
    """Each training figure: the real step's bytes, or not derived (and a warning)."""
    memory = report.totals.memory
    assert memory is not None
    if memory.saved_for_backward is None:
        assert memory.training_peak is None, where
        assert any(w.code == "training-estimate" for w in report.warnings), where
        return
    ours = (memory.saved_for_backward, memory.gradients, memory.optimizer_state)
    theirs = (real.saved, real.gradients, real.optimizer_state["adam"])
    assert ours == theirs, f"(saved, gradients, adam) {ours} != {theirs}{where}"
    assert memory.training_peak == memory.params + memory.buffers + sum(ours), where


#: A stack runs for real only if shapecli's figures for it stay below these: torch's
#: math attention, which the FLOP count runs, keeps T × T weights per head — bytes at
#: most twice its FLOPs — and a few upsamplings before attention make T large.
MAX_FLOPS = 100_000_000
MAX_SAVED = 64 << 20


def small(report: Report) -> bool:
    """Whether a real run of the stack is cheap (by shapecli's own figures)."""
    memory = report.totals.memory
    saved = memory.saved_for_backward if memory is not None else None
    return (report.totals.flops or 0) <= MAX_FLOPS and (saved or 0) <= MAX_SAVED


def check(spec: str, dtype: str = "float32") -> None:
    """shapecli's FLOPs and training figures for ``spec`` against real torch's."""
    report = shapecli.inspect(parse_spec(spec, "stack.yaml"), flops=True, memory=True, dtype=dtype)
    if not report.ok:
        event("fails at its own input")
        return
    if report.totals.flops is None:
        event("FLOPs not derived: no bound on what a real run costs")
        return
    if not small(report):
        event("too large to run for real")
        return
    event("checked")
    calls: dict[tuple[str, int], int] = {}
    real = measure(spec, dtype=dtype, optimizers=("adam",), calls=calls)
    where = f", for (--dtype {dtype})\n{spec}"
    check_flops(report, real, calls, where)
    check_memory(report, real, where)


@settings(max_examples=12)
@given(stack=stacks())
def test_layer_stacks_agree_with_real_torch(stack: Stack) -> None:
    check(stack.spec)


#: What the harness found, kept as an example: the estimate laid batch norm's output
#: out as its input (the fake kernel), not contiguous (the CPU's), and missed the copies
#: the Linears after it make.
TRANSPOSED_BATCH_NORM = TrainingStack(
    "input: 2x4x8\nmodel:\n  - Transpose: [1, 2]\n  - LazyBatchNorm1d\n"
    "  - Transpose: [1, 2]\n  - Attention: {dim: auto, heads: 1, causal: false, dropout: 0.0}\n",
    "float32",
)


@settings(max_examples=12)
@given(stack=training_stacks())
@example(stack=TRANSPOSED_BATCH_NORM)
def test_training_stacks_agree_with_real_torch(stack: TrainingStack) -> None:
    check(stack.spec, stack.dtype)
