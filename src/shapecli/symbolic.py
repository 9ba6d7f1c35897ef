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
4. **What sizes it accepts**: everything the ShapeEnv recorded, in the user's names —
   the sizes it tied together (``M == S``, ``S == 10``: *replacements*, not guards),
   each symbol's range (``H >= 4``) and every guard (divisibility, whatever form torch
   wrote it in, as ``H % 2 == 0``). Those describe where *this trace* is valid, not
   what the model needs: torch specializes sizes (and sizes computed from them) that
   are 0 or 1 or not (``H ≥ 2``, ``H//224 == 1``), and follows kernel heuristics
   (``B < 16``). So every rule is *tested* with a concrete run just outside it that
   keeps every other rule (tied names move together), and kept only if that run
   fails; a run that works disproves every rule it breaks. A name's rules that
   together are a plain range or multiple are summarized as that (``H >= 32`` for
   ``H//4 ≠ 1``, ``H//8 ≠ 1``, …) and tested as such. A rule Python cannot write is
   a ``size-assumption`` warning, never silently taken for acceptance.
5. The report of step 1, its shapes replaced by the formulas, with the accepted sizes.

Formulas are Python integer arithmetic over the names (``//``, ``%``, ``max``), so a
script can evaluate them. Parameter shapes stay concrete: they cannot depend on the
input in a model that works for all sizes.

Fake tensors and sympy are imported only here, so concrete runs never pay for them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    formulas, facts = _symbolic_pass(first.built, inputs, samples)
    constraints, warnings = _accepted(facts, samples, run)
    rows = tuple(_with_formulas(row, formulas) for row in first.report.rows)
    totals = replace(first.report.totals, activation_bytes=None, flops=None, memory=None)
    return replace(
        first.report,
        inputs=inputs,
        rows=rows,
        totals=totals,
        symbols=tuple(symbols),
        constraints=tuple(constraints),
        warnings=(*first.report.warnings, *warnings),
        samples=tuple(samples.items()),
    )


# -- 2. sizes that depend on the input ------------------------------------------------------------


def _inferred(run: _Run) -> dict[str, tuple[Shape | None, ...]]:
    return {row.path: tuple(p.shape for p in row.params) for row in run.report.rows if row.inferred}


def _varied(first: _Run, symbol: str, run: Any) -> _Run | None:
    """A run that works with ``symbol`` doubled (past an upper bound: halved), or
    None. If it fails alone, every name at the same sample size moves along: they may
    be tied (a mask as long as its sequence), and moving one alone fails for that."""
    sample = first.values[symbol]
    alike = [name for name, value in first.values.items() if value == sample]
    for names in [[symbol], alike] if len(alike) > 1 else [[symbol]]:
        for value in (sample * 2, max(2, sample // 2)):
            if value != sample:
                varied = run({**first.values, **dict.fromkeys(names, value)})
                if varied.report.ok:
                    return varied  # type: ignore[no-any-return]
    return None


def _size_dependent(first: _Run, symbols: list[str], run: Any) -> list[Problem]:
    """One problem per inferred layer whose size changes with a symbol."""
    base = _inferred(first)
    depends: dict[str, list[str]] = {}
    for symbol in symbols:
        varied = _varied(first, symbol, run)
        if varied is None:
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
    _Facts,
]:
    """Every module's input and output shapes as formulas, and what torch recorded
    about the sizes (see :class:`_Facts`)."""
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
            expr = d.node.expr.xreplace(_written_as(env.replacements, names, list(samples)))
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
    return formulas, _facts(env, names, list(samples))


@dataclass(frozen=True)
class _Facts:
    """What the symbolic run recorded about the sizes, in the user's names (sympy).

    ``ties`` are the sizes torch found equal to an expression of the others (``M`` is
    ``S``, ``S`` is 10): it keeps them as *replacements*, not guards, and every guard
    and formula is written in the remaining, free names. ``ranges`` are those free
    names' bounds; ``guards`` everything else torch checked, ties substituted."""

    ranges: dict[str, tuple[int, float]]
    ties: dict[str, Any]
    guards: tuple[Any, ...]


def _facts(env: Any, names: Mapping[Any, Any], order: Sequence[str]) -> _Facts:
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
    return _Facts(ranges, ties, tuple(guards))


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

        def _print_Relational(self, expr: Any) -> str:
            return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

        def _print_And(self, expr: Any) -> str:
            return " and ".join(f"({self._print(a)})" for a in expr.args)

        def _print_Or(self, expr: Any) -> str:
            return " or ".join(f"({self._print(a)})" for a in expr.args)

        def _print_Not(self, expr: Any) -> str:
            return f"not ({self._print(expr.args[0])})"

        def _print_PowByNatural(self, expr: Any) -> str:
            a, b = (self.parenthesize(arg, PRECEDENCE["Pow"]) for arg in expr.args)
            return f"{a}**{b}"

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

#: How to evaluate a constraint's Python text: integer arithmetic and nothing else.
_EVAL_GLOBALS: dict[str, Any] = {"__builtins__": {}, "max": max, "min": min}

Sizes = Mapping[str, int]

#: Kinds of rule, in the order they are printed.
_TIE, _BOUND, _DIVISIBLE, _GUARD = range(4)


@dataclass(frozen=True, eq=False)
class _Rule:
    """One thing torch recorded about the sizes, as a candidate constraint.

    ``text`` is what the user reads: Python over the names, and ``holds`` is that text
    evaluated, so what is tested is what is printed. ``reads`` are the names in the
    text; ``moves`` the ones a run outside it changes (a tie ``M == S`` moves M alone;
    anything else moves its names and every name tied to them along). ``assumption``
    marks the forms torch's own 0/1 specialization produces (``H ≥ 2``, ``H//4 ≠ 1``,
    ``H//4 > 1``): rarely a requirement, so tried together first. ``parts``: for a
    summary (``H >= 32``), the rules it stands for."""

    text: str
    kind: int
    reads: tuple[str, ...]
    moves: tuple[str, ...]
    assumption: bool = False
    holds: Any = None  # Callable[[Sizes], bool]; None when the text is not Python
    parts: tuple[_Rule, ...] = ()


def _rule(
    text: str, kind: int, reads: Iterable[str], moves: Iterable[str] | None = None, **more: Any
) -> _Rule:
    reads = tuple(sorted(set(reads)))
    moves = reads if moves is None else tuple(moves)
    return _Rule(text, kind, reads, moves, holds=_evaluator(text), **more)


@dataclass
class _Verdicts:
    """The rules still standing, and those a run confirmed."""

    pending: list[_Rule]
    kept: list[_Rule] = dataclasses.field(default_factory=list)
    every: list[_Rule] = dataclasses.field(default_factory=list)  # in order of creation

    def settle(self, rule: _Rule, sizes: Sizes, ok: bool) -> None:
        """A run at ``sizes``, which break ``rule``: if it failed, ``rule`` is kept."""
        if ok:
            self.disproved(sizes)
        else:
            self.pending.remove(rule)
            self.kept.append(rule)

    def disproved(self, sizes: Sizes) -> None:
        """A run at ``sizes`` worked: every standing rule they break is wrong, and a
        wrong summary gives way to those of its parts that the run did not disprove."""
        for wrong in [r for r in self.pending if not r.holds(sizes)]:
            if wrong not in self.pending:
                continue  # a sibling of a summary already given up
            siblings = [r for r in self.every if wrong.parts and r.parts is wrong.parts]
            self.pending = [r for r in self.pending if r is not wrong and r not in siblings]
            self.kept = [r for r in self.kept if r not in siblings]
            self.pending += [p for p in wrong.parts if p.holds(sizes)]


def _accepted(facts: _Facts, samples: Sizes, run: Any) -> tuple[list[str], list[Problem]]:
    """The constraints concrete runs confirm, and a warning for each thing torch
    assumed that cannot be written as Python (so cannot be tested, nor printed).

    A run that works proves wrong every rule it breaks. A run that fails confirms the
    one rule it breaks, so each test run breaks one rule and keeps every other standing
    one (tied names move together: ``S`` and ``M`` to 1 together, else the run fails
    for ``M == S``, not for ``S ≥ 2``). A rule no such run can break is implied by the
    others, and a rule no size near the samples breaks at all restricts nothing:
    neither is printed."""
    rules = _rules(facts)
    unwritten = [r for r in rules if not _written(r, samples)]
    search = _Search(
        samples, {n: _probes(samples[n], facts.ranges.get(n)) for n in samples}, facts.ties
    )
    pending = [r for r in rules if r not in unwritten and search.outside(r, ()) is not None]
    verdicts = _Verdicts(pending, every=list(rules))
    _try_assumptions(verdicts, search, list(facts.ranges), run)
    while True:  # ends: each run keeps a rule or disproves one of torch's for good
        _summarize(verdicts, samples, list(facts.ranges))
        verdicts.pending.sort(key=lambda r: (r.kind, len(r.reads)))  # plain rules first
        if not (_test_each(verdicts, search, run) or _break_a_tie(verdicts, search, run)):
            break
    rank = {name: i for i, name in enumerate(samples)}
    kept = sorted(
        (r for r in verdicts.every if r in verdicts.kept),
        key=lambda r: (r.kind, min((rank[n] for n in r.reads), default=0)),
    )
    return [r.text for r in kept], [_unwritten(r) for r in unwritten]


def _try_assumptions(verdicts: _Verdicts, search: _Search, free: Sequence[str], run: Any) -> None:
    """Runs at sizes that break as many of torch's assumptions as they can while
    keeping every other rule (ResNet's fifteen ``≠ 1`` guards and ``H ≥ 2``: H = W = 1
    breaks them all): each that works proves all those wrong. Again while one works
    and some are left (``H//4 ≠ 1`` and ``W//4 ≠ 1`` may not break together)."""
    for _ in range(len(free) + 1):
        assumptions = [r for r in verdicts.pending if r.assumption]
        required = [r for r in verdicts.pending if not r.assumption]
        sizes = _boldest(assumptions, required, search, free)
        if not _broken(assumptions, sizes) or not run(sizes).report.ok:
            return
        verdicts.disproved(sizes)


def _boldest(
    assumptions: Sequence[_Rule], required: Sequence[_Rule], search: _Search, free: Sequence[str]
) -> dict[str, int]:
    """Sizes that break the most ``assumptions`` and keep ``required``: each free
    name in turn to its best probe, twice over."""
    sizes = dict(search.samples)
    for _ in range(2):
        for name in free:
            best, most = sizes, _broken(assumptions, sizes)
            for value in search.probes[name][1]:
                trial = search.tied({**sizes, name: value}, (name,))
                count = _broken(assumptions, trial)
                if count > most and all(r.holds(trial) for r in required):
                    best, most = trial, count
            sizes = best
    return sizes


def _test_each(verdicts: _Verdicts, search: _Search, run: Any) -> bool:
    """Test every standing rule that sizes can break alone; whether any was."""
    progress = False
    for rule in list(verdicts.pending):
        if rule not in verdicts.pending:
            continue  # a summary that gave way
        others = [r for r in (*verdicts.kept, *verdicts.pending) if r is not rule]
        sizes = search.outside(rule, others)
        if sizes is not None:
            verdicts.settle(rule, sizes, run(sizes).report.ok)
            progress = True
    return progress


def _break_a_tie(verdicts: _Verdicts, search: _Search, run: Any) -> bool:
    """When standing rules only break together (``H ≥ 2`` and ``H ≠ 1``, both only at
    H = 1), test the first of them keeping only the confirmed ones: if the run fails,
    it is the one kept, and the others are implied by it. False if none can be tested."""
    for rule in verdicts.pending:
        sizes = search.outside(rule, verdicts.kept)
        if sizes is not None:
            verdicts.settle(rule, sizes, run(sizes).report.ok)
            return True
    return False


def _broken(rules: Sequence[_Rule], sizes: Sizes) -> int:
    return sum(1 for r in rules if not r.holds(sizes))


@dataclass(frozen=True)
class _Search:
    """Sizes to test a rule at: the samples with some names moved to their probes."""

    samples: Sizes
    probes: Mapping[str, tuple[list[int], list[int]]]  # (all, special): see _probes
    ties: Mapping[str, Any]

    def outside(self, rule: _Rule, others: Sequence[_Rule]) -> dict[str, int] | None:
        """The sizes nearest the samples that break ``rule`` and keep ``others``; for a
        summary, those that break the fewest of its parts (then the nearest): there,
        a failure is the summary's own, not that of one of torch's conditions it
        stands for (``H <= 227`` tested at 228 breaks ``(H//4) % 7 == 0`` too)."""
        found = (
            s
            for s in self._around(rule.moves)
            if not rule.holds(s) and all(r.holds(s) for r in others)
        )
        if not rule.parts:
            return next(found, None)
        return min(found, key=lambda s: _broken(rule.parts, s), default=None)

    def _around(self, names: Sequence[str]) -> Iterator[dict[str, int]]:
        """One name moved, nearest first; then, for a rule over several names, two of
        them together, and all of them to the same size (an image's H and W)."""
        single = len(names) == 1
        for name in names:
            for value in self.probes[name][0] if single else self.probes[name][1]:
                yield from self._possible({name: value})
        small = range(1, 17)
        for a, b in itertools.combinations(names, 2):
            for pair in itertools.chain(
                itertools.product(self.probes[a][1], self.probes[b][1]),
                itertools.product(small, small),
            ):
                yield from self._possible(dict(zip((a, b), pair, strict=True)))
        if not single:
            top = 4 * max(self.samples[n] for n in names)
            for value in range(1, top + 1):
                yield from self._possible(dict.fromkeys(names, value))

    def _possible(self, moved: Mapping[str, int]) -> Iterator[dict[str, int]]:
        sizes = self.tied({**self.samples, **moved}, tuple(moved))
        if all(v >= 1 for v in sizes.values()):
            yield sizes

    def tied(self, sizes: Sizes, moved: Sequence[str]) -> dict[str, int]:
        """``sizes`` with every tied name recomputed from the names it is tied to,
        except the ones moved on purpose (to test the tie itself)."""
        out = dict(sizes)
        for name, expr in self.ties.items():
            if name not in moved:
                out[name] = int(expr.xreplace({s: out[str(s)] for s in expr.free_symbols}))
        return out


def _probes(sample: int, bounds: tuple[int, float] | None) -> tuple[list[int], list[int]]:
    """The sizes to try for one name: every size up to four times the sample and just
    past its bounds, nearest the sample first (so the first that breaks a rule is just
    outside it); and the few worth combining with other names' — the sample's
    neighbours, the smallest sizes (where torch's specializations live), each side of
    its bounds."""
    special = {sample + d for d in range(-3, 4)} | {1, 2, 3, 4, 2 * sample, sample // 2}
    if bounds is not None:
        special |= {bounds[0] - 1, bounds[0]}
        if bounds[1] != math.inf:
            special |= {int(bounds[1]), int(bounds[1]) + 1}

    def nearest_first(sizes: Iterable[int]) -> list[int]:
        return sorted(
            {v for v in sizes if v >= 1 and v != sample}, key=lambda v: (abs(v - sample), v)
        )

    return nearest_first(itertools.chain(range(1, 4 * sample + 1), special)), nearest_first(special)


def _unwritten(rule: _Rule) -> Problem:
    """The warning for a rule torch assumed that shapecli cannot write in Python."""
    return Problem(
        "size-assumption",
        f"torch assumed {rule.text} about the sizes, which shapecli cannot write as a "
        "Python constraint, so did not test: the model may accept fewer sizes than the "
        "constraints say",
        severity="warning",
        hint="try sizes that break it with --input, with numbers there",
    )


# -- 4a. a name's rules, summarized -------------------------------------------------------------


def _summarize(verdicts: _Verdicts, samples: Sizes, free: Sequence[str]) -> None:
    """Each name's rules, where together they are a plain range, a multiple or one
    size, as that (``H//4 != 1``, ``H//8 != 1``, ``H//16 != 1`` and ``(H//4)*… > 1``
    are ``H >= 32``): tested just outside it, like any rule, and given up for its
    parts if that run works."""
    for name in free:
        own = [r for r in verdicts.pending if r.reads == (name,)]
        if not own:
            continue
        top = _top(own, samples[name])
        accepted = [v for v in range(1, top + 1) if all(r.holds({**samples, name: v}) for r in own)]
        pattern = _fit(accepted, top)
        if pattern is None:
            continue
        summary = _plain(name, pattern, tuple(own))
        if [s.text for s in summary] != [r.text for r in own]:
            verdicts.pending = [r for r in verdicts.pending if r not in own] + summary
            verdicts.every += summary


def _top(rules: Sequence[_Rule], sample: int) -> int:
    """How far to look at one name's rules: past twice every number they mention."""
    numbers = [int(n) for r in rules for n in re.findall(r"\d+", r.text)]
    return max(4 * sample, 64, 2 * max(numbers, default=0) + 2)


@dataclass(frozen=True)
class _Pattern:
    """Every size from ``lowest`` to ``highest`` (None: no end) whose ``size // per``
    is ``residue`` modulo ``step``: a range, a multiple (``H % 2 == 0``), or what
    stride-4 patches in windows of 56 need (``(H//4) % 56 == 0``)."""

    lowest: int
    highest: int | None
    per: int = 1
    step: int = 1
    residue: int = 0

    def __contains__(self, size: int) -> bool:
        above = size >= self.lowest and (self.highest is None or size <= self.highest)
        return above and (size // self.per) % self.step == self.residue


def _fit(accepted: Sequence[int], top: int) -> _Pattern | None:
    """The pattern that is exactly ``accepted`` (of the sizes 1…top), if one is: its
    runs of consecutive sizes all ``per`` long (but the first and last, cut by the
    bounds), ending every ``per * step`` sizes."""
    runs: list[list[int]] = []
    for size in accepted:
        if runs and size == runs[-1][-1] + 1:
            runs[-1].append(size)
        else:
            runs.append([size])
    pattern = _Pattern(accepted[0], accepted[-1])
    ends = [r[-1] for r in runs if r[-1] < top]
    period = functools.reduce(math.gcd, (e - ends[0] for e in ends[1:]), 0)
    if period:
        per = max(len(r) for r in runs)
        if period % per or (ends[0] + 1) % per:
            return None  # runs not aligned to a stride: no pattern of this kind
        step = period // per
        pattern = replace(pattern, per=per, step=step, residue=(ends[0] // per) % step)
    if accepted[-1] > top - max(period, 1):
        pattern = replace(pattern, highest=None)  # the next run would be past the top
    if [v for v in range(1, top + 1) if v in pattern] != list(accepted):
        return None
    return pattern


def _plain(name: str, pattern: _Pattern, parts: tuple[_Rule, ...]) -> list[_Rule]:
    """The plain rules for a pattern of sizes, each testable on its own."""
    if pattern.lowest == pattern.highest:
        return [_rule(f"{name} == {pattern.lowest}", _BOUND, (name,), parts=parts)]
    rules = []
    unbounded = replace(pattern, lowest=1, highest=None)
    if next(v for v in range(1, pattern.lowest + 1) if v in unbounded) < pattern.lowest:
        rules.append(_rule(f"{name} >= {pattern.lowest}", _BOUND, (name,), parts=parts))
    if pattern.highest is not None:
        rules.append(_rule(f"{name} <= {pattern.highest}", _BOUND, (name,), parts=parts))
    if pattern.step > 1:
        of = name if pattern.per == 1 else f"({name}//{pattern.per})"
        text = f"{of} % {pattern.step} == {pattern.residue}"
        rules.append(_rule(text, _DIVISIBLE, (name,), parts=parts))
    return rules


# -- 4b. torch's records as rules ---------------------------------------------------------------


def _rules(facts: _Facts) -> list[_Rule]:
    """Every candidate constraint: the ties (``M == S``, ``S == 10``), each name's
    bounds, then the guards (divisibility as ``H % 2 == 0``, whatever torch wrote it
    as), each once."""
    rules: dict[str, _Rule] = {}

    def add(rule: _Rule) -> None:
        rules.setdefault(rule.text, rule)

    for name, expr in facts.ties.items():
        reads = (name, *(str(s) for s in expr.free_symbols))
        add(_rule(f"{name} == {python(expr)}", _TIE, reads, moves=(name,)))
    for name, (lower, upper) in facts.ranges.items():
        if lower >= 2:
            add(_rule(f"{name} >= {lower}", _BOUND, (name,), assumption=lower == 2))
        if upper != math.inf:
            add(_rule(f"{name} <= {int(upper)}", _BOUND, (name,)))
    for guard in facts.guards:  # ``H >= 4`` too: torch's range may say 8, for no need
        add(_guard_rule(guard))
    return list(rules.values())


def _guard_rule(guard: Any) -> _Rule:
    """A guard as a rule: divisibility in its plain form, anything else as Python."""
    import sympy

    reads = [str(s) for s in guard.free_symbols]
    divisible = _divisibility(guard)
    if divisible is not None:
        base, divisor = divisible
        text = f"{python(sympy.Mod(base, divisor, evaluate=False))} == 0"
        return _rule(text, _DIVISIBLE, reads)
    return _rule(python(guard), _GUARD, reads, assumption=_specializes(guard))


def _specializes(guard: Any) -> bool:
    """Whether a guard has the form torch's 0/1 specialization gives it: a size
    computed from the names (``H//224``: one window) is or is not 0 or 1, or is more
    than 1. Those hold at the samples by accident, not because the model needs them."""
    import sympy

    if isinstance(guard, sympy.Ne):
        return True
    if isinstance(guard, sympy.Eq):
        return any(side in (0, 1) for side in guard.args)
    if isinstance(guard, sympy.StrictGreaterThan | sympy.GreaterThan):
        size, bound = guard.args
    elif isinstance(guard, sympy.StrictLessThan | sympy.LessThan):
        bound, size = guard.args
    else:
        return False
    strict = isinstance(guard, sympy.StrictGreaterThan | sympy.StrictLessThan)
    return not size.is_Symbol and bound == (1 if strict else 2)


def _divisibility(guard: Any) -> tuple[Any, int] | None:
    """``(H, 2)`` when the guard says H is a multiple of 2, in any of the forms torch
    writes it: ``Eq(Mod(H, 2), 0)``, ``Eq(H, 2*(H//2))``, ``Eq(2*(H//2), H)``."""
    import sympy

    if not isinstance(guard, sympy.Eq):
        return None
    difference = sympy.expand(guard.lhs - guard.rhs)  # type: ignore[no-untyped-call]
    for atom in difference.atoms(sympy.Function):
        kind = type(atom).__name__
        if kind not in _TIGHT or len(atom.args) != 2 or not atom.args[1].is_Integer:
            continue
        base, divisor = atom.args
        remainder = atom if kind != "FloorDiv" else base - divisor * atom
        if any(_zero(difference - sign * remainder) for sign in (1, -1)):
            return base, int(divisor)
    return None


def _zero(expr: Any) -> bool:
    import sympy

    return bool(sympy.expand(expr) == 0)  # type: ignore[no-untyped-call]


def _evaluator(text: str) -> Any:
    """``text`` as a function of the sizes (None if it is not even Python syntax). It
    raises for text that is not Python that runs (torch's functions with no Python
    spelling), and holds where it is undefined (``H // (W - 1)`` at W = 1): sizes there
    prove nothing about it."""
    try:
        code = compile(text, "<constraint>", "eval")
    except SyntaxError:
        return None

    def holds(sizes: Sizes) -> bool:
        try:
            return bool(eval(code, _EVAL_GLOBALS, dict(sizes)))  # our own text
        except ArithmeticError:
            return True

    return holds


def _written(rule: _Rule, samples: Sizes) -> bool:
    """Whether the rule's text is Python that runs, and true at the samples (where
    torch's guards all held): else the text is not what torch meant."""
    try:
        return rule.holds is not None and rule.holds(samples)
    except Exception:  # NameError: a function Python does not have, …
        return False
