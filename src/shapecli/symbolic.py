"""Symbolic sizes: ``--input Bx3xHxW`` shows every shape as a formula in the user's
names, and which sizes the model accepts.

How, in five steps, each a dry run the rest of shapecli already trusts:

1. **A concrete run at sample sizes** (a symbol takes the spec's own size at that
   position, else 2 for a leading batch dimension and 64 otherwise). Lazy layers get
   their sizes here; a shape problem at these sizes is reported as such, with the
   samples named.
2. **One more concrete run per symbol**, that symbol doubled: a layer whose *inferred*
   size changes is a layer whose size depends on the input's size (a ``LazyLinear``
   after a ``Flatten`` over H and W). It cannot work for all sizes: an error row that
   names the symbols it depends on.
3. **The symbolic run**: the sized modules become fake tensors
   (``FakeTensorMode`` with a ``ShapeEnv``) and run on inputs whose sizes are symbols
   named as the user named them; every module's shapes are recorded as formulas.
4. **What sizes it accepts**: the ShapeEnv's ranges for each symbol (``H ≥ 4``) and
   the divisibility rules it recorded. torch also records specialization guards that
   are no requirement at all (``B < 16`` from a kernel heuristic, ``H ≠ 3``); so each
   bound is *tested* with a concrete run just outside it, and kept only if that run
   fails.
5. The report of step 1, its shapes replaced by the formulas, with the accepted sizes.

Formulas are Python integer arithmetic over the names (``//``, ``%``, ``max``), so a
script can evaluate them. Parameter shapes stay concrete: they cannot depend on the
input in a model that works for all sizes.

Fake tensors and sympy are imported only here, so concrete runs never pay for them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from shapecli.construct import BuiltModel, build_modules
from shapecli.dryrun import dry_run
from shapecli.errors import Problem
from shapecli.inputs import InputSpec
from shapecli.report import Report, Row, Shape
from shapecli.spec.model import Spec

BATCH_SAMPLE = 2
SIZE_SAMPLE = 64


def symbols_of(inputs: Sequence[InputSpec]) -> list[str]:
    """The symbolic sizes, in order of first appearance."""
    found: dict[str, None] = {}
    for spec in inputs:
        for d in spec.dims:
            if isinstance(d, str):
                found.setdefault(d)
    return list(found)


def samples_for(inputs: Sequence[InputSpec], declared: Sequence[InputSpec]) -> dict[str, int]:
    """A size for each symbol: the spec's own at that position, else a default."""
    by_name = {d.name: d for d in declared if d.name}
    samples: dict[str, int] = {}
    for i, spec in enumerate(inputs):
        example = (
            by_name.get(spec.name) if spec.name else (declared[i] if i < len(declared) else None)
        )
        for j, d in enumerate(spec.dims):
            if not isinstance(d, str) or d in samples:
                continue
            given = example.dims[j] if example and j < len(example.dims) else None
            if isinstance(given, int) and given >= 2:
                samples[d] = given
            else:
                samples[d] = BATCH_SAMPLE if j == 0 else SIZE_SAMPLE
    return samples


def concrete(inputs: Sequence[InputSpec], values: Mapping[str, int]) -> tuple[InputSpec, ...]:
    """The inputs with every symbol replaced by its value."""
    return tuple(
        dataclasses.replace(
            spec, dims=tuple(values[d] if isinstance(d, str) else d for d in spec.dims)
        )
        for spec in inputs
    )


@dataclass
class _Run:
    """One concrete dry run at given sizes."""

    values: dict[str, int]
    built: BuiltModel
    report: Report


def inspect_symbolic(
    spec: Spec,
    inputs: tuple[InputSpec, ...],
    allow_import: Iterable[str] = (),
) -> Report:
    """The report of a spec whose inputs have symbolic sizes (see the module docstring)."""
    symbols = symbols_of(inputs)
    samples = samples_for(inputs, spec.inputs)
    allowed = tuple(allow_import)

    def run(values: Mapping[str, int]) -> _Run:
        built = build_modules(spec, allowed)
        report = dry_run(built, concrete(inputs, values), spec.name, spec.file)
        return _Run(dict(values), built, report)

    first = run(samples)
    sampled = ", ".join(f"{name} = {value}" for name, value in samples.items())
    if not first.report.ok:
        note = f"with the sample sizes {sampled} (give other sizes to try others)"
        errors = tuple(replace(e, notes=(*e.notes, note)) for e in first.report.errors)
        return replace(first.report, inputs=inputs, errors=errors, symbols=tuple(symbols))
    dependent = _size_dependent(first, symbols, run)
    if dependent:
        return replace(first.report, inputs=inputs, errors=tuple(dependent), symbols=tuple(symbols))
    formulas, ranges, divisors = _symbolic_pass(first.built, inputs, samples)
    constraints = _accepted(ranges, divisors, samples, run)
    rows = tuple(_with_formulas(row, formulas) for row in first.report.rows)
    totals = replace(first.report.totals, activation_bytes=None, flops=None, memory=None)
    return replace(
        first.report,
        inputs=inputs,
        rows=rows,
        totals=totals,
        symbols=tuple(symbols),
        constraints=tuple(constraints),
        samples=tuple(samples.items()),
    )


# -- 2. sizes that depend on the input ------------------------------------------------------------


def _inferred(run: _Run) -> dict[str, tuple[Shape | None, ...]]:
    return {row.path: tuple(p.shape for p in row.params) for row in run.report.rows if row.inferred}


def _size_dependent(first: _Run, symbols: list[str], run: Any) -> list[Problem]:
    """One problem per inferred layer whose size changes with a symbol."""
    base = _inferred(first)
    depends: dict[str, list[str]] = {}
    for symbol in symbols:
        sample = first.values[symbol]
        varied = run({**first.values, symbol: sample * 2})
        if not varied.report.ok:  # past an upper bound: try below the sample instead
            varied = run({**first.values, symbol: max(2, sample // 2)})
        if not varied.report.ok or varied.values[symbol] == sample:
            continue  # nothing to compare with: step 4 finds the bounds
        shapes = _inferred(varied)
        for path, params in base.items():
            if path in shapes and shapes[path] != params:
                depends.setdefault(path, []).append(symbol)
    problems = []
    for path, names in depends.items():
        entry = first.built.entries.get(path)
        row = next(r for r in first.report.rows if r.path == path)
        listed = " and ".join(names)
        problems.append(
            Problem(
                "size-dependent",
                f"layer {path} ({row.type}) takes its size from its input, and that size "
                f"changes with {listed}: a layer's parameters cannot depend on the input's "
                "size",
                entry.source if entry else None,
                path=path,
                layer_type=entry.type if entry else row.type,
                input_shapes=row.input_shapes,
                hint=f"fix {listed} (e.g. --input with numbers there), or pool to a fixed "
                "size first (e.g. `AdaptiveAvgPool2d: 1`)",
            )
        )
    return problems


# -- 3. the symbolic run ----------------------------------------------------------------------


def _symbolic_pass(
    built: BuiltModel, inputs: Sequence[InputSpec], samples: Mapping[str, int]
) -> tuple[
    dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]],
    dict[str, tuple[int, float]],
    list[tuple[str, int]],
]:
    """Every module's input and output shapes as formulas; each symbol's range; the
    ``name % k == 0`` rules torch recorded."""
    import sympy
    from torch._guards import GuardSource, Source
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    from shapecli.record import Recorder
    from shapecli.speedups import lean_meta

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
    names: dict[Any, sympy.Symbol] = {}
    sizes: dict[str, Any] = {}
    for symbol, hint in samples.items():
        expr = env.create_symbol(hint, Named(symbol), dynamic_dim=DimDynamic.DYNAMIC)
        sizes[symbol] = env.create_symintnode(expr, hint=hint)
        names[expr] = sympy.Symbol(symbol, integer=True, positive=True)  # type: ignore[no-untyped-call]

    def size(d: object) -> int | str:
        if isinstance(d, torch.SymInt):
            expr = d.node.expr.subs(names)
            return int(expr) if expr.is_number else python(expr)
        return int(d)  # type: ignore[call-overload, no-any-return]

    model = built.model
    recorder = Recorder(model, set(built.entries), size=size)
    with lean_meta(), mode:
        model.to_empty(device="cpu")
        built.apply_ties()
        tensors = [
            torch.zeros(
                tuple(sizes[d] if isinstance(d, str) else d for d in spec.dims),
                dtype=getattr(torch, spec.dtype),
            )
            for spec in inputs
        ]
        recorder.install()
        try:
            model.eval()
            with torch.no_grad():
                model(*tensors)
        finally:
            recorder.remove()
    formulas = {
        path: (tuple(i.shape for i in call.inputs), tuple(o.shape for o in call.outputs or ()))
        for path, call in recorder.first.items()
    }
    ranges: dict[str, tuple[int, float]] = {}
    for expr, named in names.items():
        bounds = env.var_to_range.get(expr)
        if bounds is not None:
            ranges[str(named)] = (_bound(bounds.lower, 1), _bound(bounds.upper, math.inf))
    divisors = []
    for guard in env.guards:
        rule = guard.expr.subs(names)
        if isinstance(rule, sympy.Eq) and rule.rhs == 0 and isinstance(rule.lhs, sympy.Mod):
            base, divisor = rule.lhs.args
            if isinstance(base, sympy.Symbol) and divisor.is_Integer:
                divisors.append((str(base), int(divisor)))
    return formulas, ranges, list(dict.fromkeys(divisors))


def _bound(value: Any, unbounded: float) -> Any:
    """A range end as an int, or ``unbounded`` (torch's own integer infinity is
    "finite" to sympy, so ask the number itself)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return unbounded


#: torch's sympy functions Python writes as operators tighter than + and -.
_TIGHT = ("FloorDiv", "PythonMod", "Mod")


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
                if type(term).__name__ not in _TIGHT and loose:
                    text = f"({text})"
                if i and text.startswith("-"):
                    out.append(f" - {text[1:]}")
                else:
                    out.append(f" + {text}" if i else text)
            return "".join(out)

        def _print_Max(self, expr: Any) -> str:
            return f"max({', '.join(self._print(a) for a in expr.args)})"

        def _print_Min(self, expr: Any) -> str:
            return f"min({', '.join(self._print(a) for a in expr.args)})"

        def parenthesize(self, item: Any, level: float, strict: bool = False) -> str:
            if type(item).__name__ in _TIGHT and level >= PRECEDENCE["Mul"]:
                return f"({self._print(item)})"  # Python reads 2*H//2 as (2*H)//2
            return str(super().parenthesize(item, level, strict))  # type: ignore[no-untyped-call]

    return Formula()  # type: ignore[no-untyped-call]


def _with_formulas(
    row: Row, formulas: Mapping[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]
) -> Row:
    found = formulas.get(row.path)
    if found is None:
        return row
    return replace(row, input_shapes=found[0], output_shapes=found[1])


# -- 4. what sizes it accepts -------------------------------------------------------------------


def _accepted(
    ranges: Mapping[str, tuple[int, float]],
    divisors: Sequence[tuple[str, int]],
    samples: Mapping[str, int],
    run: Any,
) -> list[str]:
    """The bounds torch recorded that a concrete run just outside them confirms."""

    def fails(symbol: str, value: int) -> bool:
        if value < 1:
            return False
        return not run({**samples, symbol: value}).report.ok

    accepted = []
    for symbol, (lower, upper) in ranges.items():
        if lower >= 2 and fails(symbol, lower - 1):
            accepted.append(f"{symbol} >= {lower}")
        if upper != float("inf") and fails(symbol, int(upper) + 1):
            accepted.append(f"{symbol} <= {int(upper)}")
    for symbol, divisor in divisors:
        if fails(symbol, samples[symbol] + 1):
            accepted.append(f"{symbol} % {divisor} == 0")
    return accepted
