"""What sizes a model accepts: torch's records about the sizes, as rules over the
user's names, each kept only if a concrete run just outside it fails.

Everything the ``ShapeEnv`` recorded — the sizes it tied together (``M == S``,
``S == 10``: *replacements*, not guards), each symbol's range (``H >= 4``) and every
guard (divisibility, whatever form torch wrote it in, as ``H % 2 == 0``) — describes
where *this trace* is valid, not what the model needs: torch specializes sizes (and
sizes computed from them) that are 0 or 1 or not (``H ≥ 2``, ``H//224 == 1``), and
follows kernel heuristics (``B < 16``). So every rule is *tested* with a concrete run
just outside it that keeps every other rule (tied names move together), and kept only
if that run fails; a run that works disproves every rule it breaks. A name's rules
that together are a plain range or multiple are summarized as that (``H >= 32`` for
``H//4 ≠ 1``, ``H//8 ≠ 1``, …) and tested as such. A rule the formula language cannot
write is a ``size-assumption`` warning, never silently taken for acceptance.

Runs are the runner's (cached by sizes: a rule implied by what earlier runs showed
costs nothing), and the search stops when the budget does
(:class:`~shapecli.symbolic.runs.BudgetExhausted` propagates: the caller says the
accepted sizes are not derived). What it keeps is still only a candidate: the proof
(:mod:`shapecli.symbolic.proof`) checks it at and around every boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shapecli.errors import Problem
from shapecli.spec.expressions import (
    ExpressionError,
    UndefinedError,
    compile_expression,
    names_in,
)
from shapecli.symbolic.fake import TIGHT, Facts, python
from shapecli.symbolic.runs import Outcome
from shapecli.symbolic.samples import Sizes

Run = Callable[[Sizes], Outcome]

_TIE, _BOUND, _DIVISIBLE, _GUARD = range(4)


@dataclass(frozen=True, eq=False)
class Rule:
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
    holds: Any = None  # Callable[[Sizes], bool]; None when the text is not in the language
    parts: tuple[Rule, ...] = ()

    @property
    def numbers(self) -> list[int]:
        """The numbers the text mentions (a bound's, a multiple's)."""
        return [int(n) for n in re.findall(r"\d+", self.text)]


def _rule(
    text: str, kind: int, reads: Iterable[str], moves: Iterable[str] | None = None, **more: Any
) -> Rule:
    reads = tuple(sorted(set(reads)))
    moves = reads if moves is None else tuple(moves)
    return Rule(text, kind, reads, moves, holds=evaluator(text), **more)


@dataclass
class _Verdicts:
    """The rules still standing, and those a run confirmed."""

    pending: list[Rule]
    kept: list[Rule] = dataclasses.field(default_factory=list)
    every: list[Rule] = dataclasses.field(default_factory=list)  # in order of creation

    def settle(self, rule: Rule, sizes: Sizes, outcome: Outcome) -> None:
        """A run at ``sizes``, which break ``rule``: if it failed, ``rule`` is kept. A
        run too large to make settles nothing: the rule is dropped, as one about sizes
        no run reaches (the proof checks the claim only where runs can be made)."""
        if outcome.skipped:
            self.pending.remove(rule)
        elif outcome.ok:
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


def accepted(
    facts: Facts,
    samples: Sizes,
    run: Run,
    working: Sequence[Sizes] = (),
    failing: Sequence[Sizes] = (),
    check: Callable[[], None] = lambda: None,
) -> tuple[list[Rule], list[Problem]]:
    """The constraints concrete runs confirm, and a warning for each thing torch
    assumed that cannot be written as Python (so cannot be tested, nor printed).

    A run that works proves wrong every rule it breaks. A run that fails confirms the
    one rule it breaks, so each test run breaks one rule and keeps every other standing
    one (tied names move together: ``S`` and ``M`` to 1 together, else the run fails
    for ``M == S``, not for ``S ≥ 2``). A rule no such run can break is implied by the
    others, and a rule no size near the samples breaks at all restricts nothing:
    neither is printed. ``working`` are sizes where the model is known to work (the
    proof's runs): every rule, and every summary, they break is wrong from the start
    (a summary ``T >= 5`` kept because T = 2 failed, where T = 4 works). ``failing``
    are sizes where it fails though every rule kept held: what torch did not record
    (it assumed T > 2 where a kernel of 2 needs T >= 2), so each symbol they moved
    gets the bound the nearest working size there gives, as one more rule. ``check``
    is called before each search of sizes (the budget's: it raises to stop)."""
    rules = rules_of(facts) + _bounds_at(failing, samples, run)
    unwritten = [r for r in rules if not _written(r, samples)]
    search = make_search(samples, facts.ranges, facts.ties, check)
    pending = [r for r in rules if r not in unwritten and search.outside(r, ()) is not None]
    verdicts = _Verdicts(pending, every=list(rules))
    for sizes in working:
        verdicts.disproved(sizes)
    _try_assumptions(verdicts, search, list(facts.ranges), run)
    while True:  # ends: each run keeps a rule or disproves one of torch's for good
        _summarize(verdicts, samples, list(facts.ranges))
        for sizes in working:
            verdicts.disproved(sizes)
        verdicts.pending.sort(key=lambda r: (r.kind, len(r.reads)))  # plain rules first
        if not (_test_each(verdicts, search, run) or _break_a_tie(verdicts, search, run)):
            break
    rank = {name: i for i, name in enumerate(samples)}
    kept = sorted(
        (r for r in verdicts.every if r in verdicts.kept),
        key=lambda r: (r.kind, min((rank[n] for n in r.reads), default=0)),
    )
    return kept, [_unwritten(r) for r in unwritten]


def _bounds_at(failing: Sequence[Sizes], samples: Sizes, run: Run) -> list[Rule]:
    """For each symbol a failing size moved below (above) its sample: a lower (upper)
    bound at the nearest size towards the sample where the model works, that symbol
    alone moved."""
    found: dict[str, Rule] = {}
    for sizes in failing:
        for name, value in sizes.items():
            sample = samples[name]
            if value == sample:
                continue
            step = 1 if value < sample else -1
            for size in range(value + step, sample, step):
                if run({**samples, name: size}).ok:
                    op = ">=" if step == 1 else "<="
                    text = f"{name} {op} {size}"
                    found.setdefault(text, _rule(text, _BOUND, (name,)))
                    break
    return list(found.values())


def _try_assumptions(verdicts: _Verdicts, search: Search, free: Sequence[str], run: Run) -> None:
    """Runs at sizes that break as many of torch's assumptions as they can while
    keeping every other rule (ResNet's fifteen ``≠ 1`` guards and ``H ≥ 2``: H = W = 1
    breaks them all): each that works proves all those wrong. Again while one works
    and some are left (``H//4 ≠ 1`` and ``W//4 ≠ 1`` may not break together)."""
    for _ in range(len(free) + 1):
        assumptions = [r for r in verdicts.pending if r.assumption]
        required = [r for r in verdicts.pending if not r.assumption]
        sizes = _boldest(assumptions, required, search, free)
        if not _broken(assumptions, sizes) or not run(sizes).ok:
            return
        verdicts.disproved(sizes)


def _boldest(
    assumptions: Sequence[Rule], required: Sequence[Rule], search: Search, free: Sequence[str]
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


def _test_each(verdicts: _Verdicts, search: Search, run: Run) -> bool:
    """Test every standing rule that sizes can break alone; whether any was."""
    progress = False
    for rule in list(verdicts.pending):
        if rule not in verdicts.pending:
            continue  # a summary that gave way
        others = [r for r in (*verdicts.kept, *verdicts.pending) if r is not rule]
        sizes = search.outside(rule, others)
        if sizes is not None:
            verdicts.settle(rule, sizes, run(sizes))
            progress = True
    return progress


def _break_a_tie(verdicts: _Verdicts, search: Search, run: Run) -> bool:
    """When standing rules only break together (``H ≥ 2`` and ``H ≠ 1``, both only at
    H = 1), test the first of them keeping only the confirmed ones: if the run fails,
    it is the one kept, and the others are implied by it. False if none can be tested."""
    for rule in verdicts.pending:
        sizes = search.outside(rule, verdicts.kept)
        if sizes is not None:
            verdicts.settle(rule, sizes, run(sizes))
            return True
    return False


def _broken(rules: Sequence[Rule], sizes: Sizes) -> int:
    return sum(1 for r in rules if not r.holds(sizes))


@dataclass(frozen=True)
class Search:
    """Sizes to test a rule at: the samples with some names moved to their probes."""

    samples: Sizes
    probes: Mapping[str, tuple[list[int], list[int]]]  # (all, special): see _probes
    ties: Mapping[str, Any]
    #: Called before each search (the budget's check: a search runs no model, but
    #: over hundreds of torch's guards it takes seconds of its own).
    check: Callable[[], None] = lambda: None

    def outside(self, rule: Rule, others: Sequence[Rule]) -> dict[str, int] | None:
        """The sizes nearest the samples that break ``rule`` and keep ``others``; for a
        summary, those that break the fewest of its parts (then the nearest): there,
        a failure is the summary's own, not that of one of torch's conditions it
        stands for (``H <= 227`` tested at 228 breaks ``(H//4) % 7 == 0`` too)."""
        self.check()
        found = (
            s
            for s in self._around(rule.moves)
            if not rule.holds(s) and all(r.holds(s) for r in others)
        )
        if not rule.parts:
            return next(found, None)
        best, fewest = None, math.inf
        for sizes in found:
            count = _broken(rule.parts, sizes)
            if count < fewest:
                best, fewest = sizes, count
                if count <= 1:
                    break  # none breaks fewer: the rule's own
        return best

    def around_rule(
        self, rule: Rule, others: Sequence[Rule], broken: bool, count: int
    ) -> list[dict[str, int]]:
        """Up to ``count`` sizes nearest the samples that keep ``others`` and break
        ``rule`` (``broken``), or keep it too."""
        found = []
        for sizes in self._around(rule.moves):
            keeps = rule.holds(sizes) != broken and all(r.holds(sizes) for r in others)
            if keeps and sizes not in found:
                found.append(sizes)
                if len(found) >= count:
                    break
        return found

    def inside_near(
        self, outside: Sequence[Mapping[str, int]], rule: Rule, others: Sequence[Rule], count: int
    ) -> list[dict[str, int]]:
        """Up to ``count`` sizes that keep ``rule`` and ``others``, nearest the
        ``outside`` ones: each walked a step at a time towards the samples (and on)."""
        found: list[dict[str, int]] = []
        for start in outside:
            step = {
                n: (self.samples[n] > start[n]) - (self.samples[n] < start[n]) for n in rule.moves
            }
            if not any(step.values()):
                continue
            for k in range(1, 4 * count + 8):
                moved = {n: start[n] + k * step[n] for n in rule.moves}
                sizes = self.tied({**start, **moved}, tuple(rule.moves))
                if min(sizes.values()) < 1:
                    break
                if rule.holds(sizes) and all(r.holds(sizes) for r in others) and sizes not in found:
                    found.append(sizes)
                    if len(found) >= count:
                        return found
        return found

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


def make_search(
    samples: Sizes,
    ranges: Mapping[str, tuple[int, float]],
    ties: Mapping[str, Any],
    check: Callable[[], None] = lambda: None,
) -> Search:
    """The sizes to test rules at, around ``samples`` (see :func:`_probes`), with
    ``ties`` moving names along; ``check`` is called before each search."""
    probes = {n: _probes(samples[n], ranges.get(n)) for n in samples}
    return Search(samples, probes, ties, check)


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


def _unwritten(rule: Rule) -> Problem:
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
        pattern = fit(accepted, top)
        if pattern is None:
            continue
        summary = plain_rules(name, pattern, tuple(own))
        if [s.text for s in summary] != [r.text for r in own]:
            verdicts.pending = [r for r in verdicts.pending if r not in own] + summary
            verdicts.every += summary


def _top(rules: Sequence[Rule], sample: int) -> int:
    """How far to look at one name's rules: past twice every number they mention."""
    numbers = [n for r in rules for n in r.numbers]
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


def fit(accepted: Sequence[int], top: int) -> _Pattern | None:
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


def plain_rules(name: str, pattern: _Pattern, parts: tuple[Rule, ...]) -> list[Rule]:
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


def rules_of(facts: Facts) -> list[Rule]:
    """Every candidate constraint: the ties (``M == S``, ``S == 10``), each name's
    bounds, then the guards (divisibility as ``H % 2 == 0``, whatever torch wrote it
    as), each once."""
    rules: dict[str, Rule] = {}

    def add(rule: Rule) -> None:
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


def _guard_rule(guard: Any) -> Rule:
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
        if kind not in TIGHT or len(atom.args) != 2 or not atom.args[1].is_Integer:
            continue
        base, divisor = atom.args
        remainder = atom if kind != "FloorDiv" else base - divisor * atom
        if any(_zero(difference - sign * remainder) for sign in (1, -1)):
            return base, int(divisor)
    return None


def _zero(expr: Any) -> bool:
    import sympy

    return bool(sympy.expand(expr) == 0)  # type: ignore[no-untyped-call]


def evaluator(text: str) -> Callable[[Sizes], bool] | None:
    """``text`` as a test of sizes, in the formula language (None where the text is
    not in it: torch's functions with no spelling there). Where it is undefined
    (``H // (W - 1)`` at W = 1) it holds: sizes there prove nothing about it."""
    try:
        compiled = compile_expression(text, limit=None)
    except ExpressionError:
        return None
    names = sorted(names_in(text))
    known: dict[tuple[int | None, ...], bool] = {}  # the search asks the same sizes again

    def holds(sizes: Sizes) -> bool:
        key = tuple(sizes.get(n) for n in names)
        if key not in known:
            if len(known) > 50_000:
                known.clear()
            try:
                known[key] = bool(compiled(sizes))
            except UndefinedError:
                known[key] = True
        return known[key]

    return holds


def _written(rule: Rule, samples: Sizes) -> bool:
    """Whether the rule's text is Python that runs, and true at the samples (where
    torch's guards all held): else the text is not what torch meant."""
    try:
        return rule.holds is not None and rule.holds(samples)
    except ExpressionError:  # a name the samples do not have, a value that is no number
        return False
