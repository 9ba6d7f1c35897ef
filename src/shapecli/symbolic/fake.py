"""The symbolic run: the sized model on torch's fake tensors, whose input sizes are
symbols named as the user named them. Every module's shapes are recorded as formulas,
and what torch's ``ShapeEnv`` recorded about the sizes (each symbol's range, the sizes
it tied together, every guard) is kept for the search of accepted sizes.

Formulas come out as Python integer arithmetic over the names (``(H - 1)//2 + 1``,
``max(1, H)``), the language :mod:`shapecli.spec.expressions` evaluates; what torch
computes otherwise (in floating point: ``TruncToInt(1.5*ToFloat(H))``) comes out in
torch's words, which that language refuses, so it is never taken for a formula.

Where torch's C++ kernels read a size as a plain number (``upsample_nearest2d`` with a
scale factor, ``padding='same'`` with an even kernel, reflection padding), the
``ShapeEnv`` *fixes* that size to its sample: every formula after it is a number. Such
a run is made again through torch's Python decompositions (its "Python dispatcher"),
which keep sizes symbolic, at some cost in time; every formula is checked against
concrete runs afterwards either way (:mod:`shapecli.symbolic.proof`).

The run is bounded by the budget: stopped, it keeps the formulas of the calls that
finished, and says why it stopped. The model it runs is not changed: parameters stay
meta tensors, which the fake mode reads as they are.

Fake tensors and sympy are imported only here and in :mod:`shapecli.symbolic.rules`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from shapecli.construct import BuiltModel
from shapecli.inputs import InputSpec
from shapecli.observe import observe
from shapecli.record import Recorder
from shapecli.replay import Replayer, repeat_copies
from shapecli.report import Shape
from shapecli.speedups import lean_meta
from shapecli.symbolic.lean import lean_symbolic
from shapecli.symbolic.runs import Budget, BudgetExhausted
from shapecli.symbolic.samples import Sizes
from shapecli.torch_compat.shape_env import idle_trace_handler_removed, uninteresting_files_known

Formulas = dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]


@dataclass(frozen=True)
class Facts:
    """What the symbolic run recorded about the sizes, in the user's names (sympy).

    ``ties`` are the sizes torch found equal to an expression of the others (``M`` is
    ``S``, ``S`` is 10): it keeps them as *replacements*, not guards, and every guard
    and formula is written in the remaining, free names. ``ranges`` are those free
    names' bounds; ``guards`` everything else torch checked, ties substituted."""

    ranges: dict[str, tuple[int, float]]
    ties: dict[str, Any]
    guards: tuple[Any, ...]


@dataclass(frozen=True)
class Trace:
    """One symbolic run: each module's shapes as formulas (of the calls that finished),
    the facts (None when the run did not finish), why it stopped if it did, and the
    symbols torch fixed to their sample."""

    formulas: Formulas
    facts: Facts | None
    stopped: str | None = None
    fixed: tuple[str, ...] = ()
    decomposed: bool = False


def trace(
    built: BuiltModel,
    inputs: Sequence[InputSpec],
    samples: Sizes,
    budget: Budget,
    share: float = 1.0,
) -> Trace:
    """The symbolic run of the sized model (see the module docstring), within ``share``
    of what is left of the budget."""
    first = _run(built, inputs, samples, budget, share, decomposed=False)
    if not first.fixed or first.stopped:
        return first
    second = _run(built, inputs, samples, budget, share, decomposed=True)
    if second.stopped or len(second.fixed) >= len(first.fixed):
        return first
    return second


def _run(
    built: BuiltModel,
    inputs: Sequence[InputSpec],
    samples: Sizes,
    budget: Budget,
    share: float,
    decomposed: bool,
) -> Trace:
    from torch._guards import GuardSource, Source
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    @dataclasses.dataclass(frozen=True)
    class Named(Source):
        """A symbol's origin, as the ShapeEnv wants one: the user's name."""

        label: str = ""

        @property
        def name(self) -> str:
            return self.label

        @property
        def guard_source(self) -> GuardSource:
            return GuardSource.LOCAL

    env = ShapeEnv()
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    _uncached(mode)
    idle_trace_handler_removed()
    with uninteresting_files_known():
        names, sizes = _symbols(env, samples, Named)
    order = list(samples)
    written: dict[Any, int | str] = {}
    model = built.model

    def size(d: object) -> int | str:
        if not isinstance(d, torch.SymInt):
            return int(d)  # type: ignore[call-overload, no-any-return]
        expr = d.node.expr
        if expr not in written:  # the same expression comes by again and again
            named = expr.xreplace(_written_as(env.replacements, names, order))
            written[expr] = int(named) if named.is_number else python(named)
        return written[expr]

    recorder = Recorder(model, set(built.entries), size=size)
    replayer = Replayer(
        model, repeat_copies(model, built.entries), recorder.first_call, recorder.replayed, size
    )
    stopped: str | None = None
    try:
        with (
            _quiet_torch(),
            lean_meta(),
            lean_symbolic(model),
            budget.interrupting(share),
            _decompositions(decomposed),
            mode,
        ):
            tensors = [
                torch.empty(
                    tuple(sizes[d] if isinstance(d, str) else d for d in spec.dims),
                    dtype=getattr(torch, spec.dtype),
                    device="meta",
                )
                for spec in inputs
            ]
            # the concrete run reported the layers' warnings: none here
            hooks = (_Checked(budget), recorder, replayer)
            error = observe(model, tensors, hooks=hooks).error
        if error is not None:
            raise error
    except BudgetExhausted:
        stopped = "the budget ran out during torch's symbolic run"
    except Exception as e:  # torch cannot trace something the concrete run did
        stopped = f"torch's symbolic run failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    formulas: Formulas = {
        path: (tuple(i.shape for i in call.inputs), tuple(o.shape for o in call.outputs))
        for path, call in recorder.first.items()
        if call.outputs is not None
    }
    facts = None if stopped else _facts(env, names, order)
    named = {str(n) for n in names.values()}
    fixed = tuple(
        name
        for name in samples
        if name not in named or (facts is not None and _is_number(facts.ties.get(name)))
    )
    return Trace(formulas, facts, stopped, fixed, decomposed)


def _uncached(mode: Any) -> None:
    """torch's cache of fake-tensor results off for the run. With symbolic sizes an
    entry costs more than it saves: each new one rebuilds its output from the recorded
    metadata to check it (sympy arithmetic on every size and stride), and that check
    adds guards of its own (sizes not 0) which the search would then test with runs.
    The run's results are the same either way (torch's own cross-check compares them);
    a torch without the switch keeps its cache."""
    if hasattr(mode, "cache_enabled"):
        mode.cache_enabled = False


def _symbols(env: Any, samples: Sizes, source: Any) -> tuple[dict[Any, Any], dict[str, Any]]:
    """A ``ShapeEnv`` symbol for each of the user's (by the user's name, as sympy), and
    each one's size as the inputs are made of (a SymInt, or the number torch fixed)."""
    import sympy
    from torch.fx.experimental.symbolic_shapes import DimDynamic

    names: dict[Any, Any] = {}
    sizes: dict[str, Any] = {}
    for symbol, hint in samples.items():
        expr = env.create_symbol(hint, source(symbol), dynamic_dim=DimDynamic.DYNAMIC)
        if not expr.is_Symbol:  # torch fixes a size of 0 or 1 as it makes it: a number
            sizes[symbol] = hint
            continue
        sizes[symbol] = env.create_symintnode(expr, hint=hint)
        names[expr] = sympy.Symbol(symbol, integer=True, positive=True)  # type: ignore[no-untyped-call]
    return names, sizes


def _is_number(expr: Any) -> bool:
    return expr is not None and bool(expr.is_number)


class _Checked:
    """The budget, checked before every module call (a hook the run installs)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.handle: Any = None

    def install(self) -> None:
        self.handle = register_module_forward_pre_hook(lambda module, args: self.budget.check())

    def remove(self) -> None:
        self.handle.remove()


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch's symbolic-shape loggers say nothing during the run: an interrupted
    guard evaluation (the budget) is logged as a failure, on the user's stderr, by
    ``symbolic_shapes`` or, for an expression being evaluated, ``sym_node``."""
    loggers = [logging.getLogger(f"torch.fx.experimental.{name}") for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_LOGGERS = ("symbolic_shapes", "sym_node")


def _decompositions(enabled: bool) -> contextlib.AbstractContextManager[object]:
    """torch's Python dispatcher, where composite operations run as their Python
    decompositions (which keep sizes symbolic) instead of C++ kernels (which read them
    as numbers)."""
    if not enabled:
        return contextlib.nullcontext()
    from torch._dispatch.python import enable_python_dispatcher

    return enable_python_dispatcher()


def _facts(env: Any, names: Mapping[Any, Any], order: Sequence[str]) -> Facts:
    """The ShapeEnv's ranges, replacements and guards in the user's names."""
    import sympy

    replacements = env.replacements
    written = _written_as(replacements, names, order)
    ties = {}
    for expr, named in names.items():
        target = _settled(expr, replacements).xreplace(written)
        if target != named:
            ties[str(named)] = target
    ranges: dict[str, tuple[int, float]] = {}
    for expr in names:
        bounds = env.var_to_range.get(expr)
        if bounds is not None and expr not in replacements:
            ranges[str(written[expr])] = (_bound(bounds.lower, 1), _bound(bounds.upper, math.inf))
    guards = []
    for guard in env.guards:
        rule = _settled(guard.expr, replacements).xreplace(written)
        if rule is not sympy.true and rule not in guards:
            guards.append(rule)
    return Facts(ranges, ties, tuple(guards))


def _settled(expr: Any, replacements: Mapping[Any, Any]) -> Any:
    """``expr`` with torch's replacements applied until none applies (they may chain)."""
    for _ in range(len(replacements) + 1):
        replaced = expr.xreplace(replacements)
        if replaced == expr:
            break
        expr = replaced
    return expr


def _written_as(
    replacements: Mapping[Any, Any], names: Mapping[Any, Any], order: Sequence[str]
) -> dict[Any, Any]:
    """Each ShapeEnv symbol as the user's name, except that names torch tied together
    are all written as the one the user wrote first: which one torch keeps is an
    accident of its own naming, and ``M == S`` reads better than ``S == M``."""
    rank = {name: i for i, name in enumerate(order)}
    written = dict(names)
    for expr, named in names.items():
        kept = _settled(expr, replacements)
        if kept in names and rank[str(named)] < rank[str(written[kept])]:
            written[kept] = named
    return written


def _bound(value: Any, unbounded: float) -> Any:
    """A range end as an int, or ``unbounded`` (torch's own integer infinity is
    "finite" to sympy, so ask the number itself)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return unbounded


#: torch's sympy functions Python writes as operators tighter than + and -.
TIGHT = ("FloorDiv", "PythonMod", "Mod")
#: The highest power written out as a product (``H*H``): the formula language has no ``**``.
_POWER = 8


def python(expr: Any) -> str:
    """A sympy formula as Python integer arithmetic: ``(H - 1)//2 + 1``, ``max(1, H)``,
    each ``//`` and ``%`` parenthesized wherever Python would read it otherwise."""
    return str(_formula_printer().doprint(expr))


@functools.cache
def _formula_printer() -> Any:
    from sympy.printing.precedence import PRECEDENCE, precedence
    from sympy.printing.str import StrPrinter

    class Formula(StrPrinter):
        printmethod = "_shapecli_formula"  # not torch's own _sympystr: ours decides

        def _binary(self, expr: Any, op: str) -> str:
            a, b = (self.parenthesize(arg, PRECEDENCE["Mul"]) for arg in expr.args)
            return f"{a}{op}{b}"

        def _print_FloorDiv(self, expr: Any) -> str:
            return self._binary(expr, "//")

        def _print_PythonMod(self, expr: Any) -> str:
            return self._binary(expr, " % ")

        def _print_Mod(self, expr: Any) -> str:
            return self._binary(expr, " % ")

        def _print_Add(self, expr: Any, order: Any = None) -> str:
            out = []
            terms = self._as_ordered_terms(expr, order=order)  # type: ignore[no-untyped-call]
            for i, term in enumerate(terms):
                text = str(self._print(term))
                loose = precedence(term) < PRECEDENCE["Add"]  # type: ignore[no-untyped-call]
                if type(term).__name__ not in TIGHT and loose:
                    text = f"({text})"
                if i and text.startswith("-"):
                    out.append(f" - {text[1:]}")
                else:
                    out.append(f" + {text}" if i else text)
            return "".join(out)

        def _print_Relational(self, expr: Any) -> str:
            return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

        def _print_And(self, expr: Any) -> str:
            return " and ".join(f"({self._print(a)})" for a in expr.args)

        def _print_Or(self, expr: Any) -> str:
            return " or ".join(f"({self._print(a)})" for a in expr.args)

        def _print_Not(self, expr: Any) -> str:
            return f"not ({self._print(expr.args[0])})"

        def _power(self, base: Any, exponent: Any) -> str:
            if getattr(exponent, "is_Integer", False) and 1 <= int(exponent) <= _POWER:
                factor = self.parenthesize(base, PRECEDENCE["Mul"])
                if type(base).__name__ in TIGHT:
                    factor = f"({self._print(base)})"
                return "*".join([factor] * int(exponent))
            return f"{self.parenthesize(base, PRECEDENCE['Pow'])}**{self._print(exponent)}"

        def _print_Pow(self, expr: Any, rational: bool = False) -> str:
            return self._power(*expr.args)

        def _print_PowByNatural(self, expr: Any) -> str:
            return self._power(*expr.args)

        def _print_Max(self, expr: Any) -> str:
            return f"max({', '.join(self._print(a) for a in expr.args)})"

        def _print_Min(self, expr: Any) -> str:
            return f"min({', '.join(self._print(a) for a in expr.args)})"

        def parenthesize(self, item: Any, level: float, strict: bool = False) -> str:
            if type(item).__name__ in TIGHT and level >= PRECEDENCE["Mul"]:
                return f"({self._print(item)})"  # Python reads 2*H//2 as (2*H)//2
            return str(super().parenthesize(item, level, strict))  # type: ignore[no-untyped-call]

    return Formula()  # type: ignore[no-untyped-call]
