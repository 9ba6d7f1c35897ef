"""The proof: every formula and every accepted-size claim checked by concrete runs
before it is printed.

The sizes checked do not come from the samples alone. For every constraint of the
claim: the sizes just outside it (the claim says the model refuses them) and just
inside (it says the model takes them), three of each where there are three, keeping
every other constraint. Eight sizes in a row (33 to 40, every symbol at once), so that
every remainder a stride can leave is seen. Sizes spread over what the claim accepts,
drawn (from a fixed seed, so the output is the same every time) from a pool that holds
the smallest sizes, where torch specializes, odd and even ones, primes and large ones;
batch sizes past torch's kernel heuristics too. And each symbol alone at 1, where a
size broadcasts (an ``Add`` of S and T works when S is 1, whatever T is). A run at
each: where the model works, each module's every size must equal its formula at those
sizes, and the claim must have said it works; where it fails, the claim must have said
so.

A formula that any run contradicts is not derived; so is the claim, when any run
contradicts it, with the sizes that did as the reason. Nothing the runs did not check
is printed as a fact: a symbol that the claim lets vary but the runs saw at fewer than
three sizes leaves its formulas not derived.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shapecli.report import Shape
from shapecli.spec.expressions import Compiled, ExpressionError, compile_expression, names_in
from shapecli.symbolic.fake import Formulas
from shapecli.symbolic.rules import Rule, Search
from shapecli.symbolic.runs import BudgetExhausted, Outcome, Seen
from shapecli.symbolic.samples import described

#: How many sizes to check on each side of each constraint, and spread over the rest.
EACH_SIDE = 3
SPREAD = 3
#: Sizes the spread draws from (with each constraint's boundary): small ones first.
POOL = (1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 31, 32, 37, 48, 50, 63, 64, 65, 97, 100)
BATCH_POOL = (1, 2, 3, 5, 16, 17, 33)
#: The run of consecutive sizes every symbol takes, and where it starts.
RUN = 8
START = 33
BATCH_START = 1
#: How many distinct sizes of a symbol the runs must see before its formulas count.
MIN_SEEN = 3

#: One size of one tensor of one row: (path, "input"/"output", tensor, dimension).
Place = tuple[str, str, int, int]


@dataclass
class Proof:
    """What the runs showed (see the module docstring)."""

    points: list[tuple[dict[str, int], bool]] = field(default_factory=list)
    #: What each run that worked saw: the evidence a formula must agree with.
    seen: list[tuple[dict[str, int], Seen]] = field(default_factory=list)
    #: Each formula a run contradicted: where, and what the model gave there.
    wrong: dict[Place, tuple[dict[str, int], int | None]] = field(default_factory=dict)
    #: Formulas not in the formula language (torch's floating point …).
    unwritten: set[Place] = field(default_factory=set)
    #: Symbols the claim lets vary that the runs saw at too few sizes.
    unseen: set[str] = field(default_factory=set)
    #: Why the claim is not derived (None: every run agreed with it).
    claim_wrong: str | None = None
    #: Inferred layers whose sizes differed at some sizes where a fresh build worked.
    changed: dict[str, dict[str, int]] = field(default_factory=dict)
    stopped: bool = False  # the budget ran out before every check was made


def prove(
    formulas: Formulas,
    claim: Sequence[Rule] | None,
    search: Search,
    symbols: Sequence[str],
    batch: set[str],
    run: Any,
    fits: Callable[[Mapping[str, int]], bool],
    earlier: Sequence[Mapping[str, int]] = (),
) -> Proof:
    """Check ``formulas`` and ``claim`` (None: no claim to check) by runs at the sizes
    the module docstring describes, and at ``earlier`` ones (an earlier claim's: what
    they showed holds for every claim); ``run`` is the runner."""
    proof = Proof()
    compiled = _compiled(formulas, proof)
    rules = list(claim or ())
    space = _Space(rules, search, symbols, batch, fits)
    points = [
        *_consecutive(space),
        *_spread(space),
        *_boundaries(rules, search),
        *_smallest(search, symbols),
        *(dict(p) for p in earlier),
    ]
    try:
        for sizes in dict.fromkeys(tuple(sorted(p.items())) for p in points):
            values = dict(sizes)
            outcome: Outcome = run(values)
            if outcome.skipped:
                continue
            proof.points.append((values, outcome.ok))
            if outcome.ok:
                proof.seen.append((values, outcome.seen))
            _check(values, outcome, rules if claim is not None else None, compiled, proof)
    except BudgetExhausted:
        proof.stopped = True
    _coverage(proof, rules, search, symbols)
    return proof


def _compiled(formulas: Formulas, proof: Proof) -> dict[Place, int | Compiled]:
    """Every size of every row: a number, or its formula compiled (each text once)."""
    cache: dict[str, Compiled | None] = {}
    out: dict[Place, int | Compiled] = {}
    for path, sides in formulas.items():
        for side, shapes in zip(("input", "output"), sides, strict=True):
            for t, shape in enumerate(shapes):
                for j, dim in enumerate(shape):
                    place = (path, side, t, j)
                    if dim is None:
                        proof.unwritten.add(place)
                        continue
                    if isinstance(dim, int):
                        out[place] = dim
                        continue
                    if dim not in cache:
                        cache[dim] = _compile(dim)
                    found = cache[dim]
                    if found is None:
                        proof.unwritten.add(place)
                    else:
                        out[place] = found
    return out


def _compile(text: str) -> Compiled | None:
    try:
        return compile_expression(text, limit=None, conditional=True)
    except ExpressionError:
        return None


def agrees(formula: int | str | None, place: Place, proof: Proof) -> bool:
    """Whether ``formula`` is what every run that worked saw at ``place``."""
    return formula is not None and disagreement(formula, place, proof) is None


def disagreement(formula: int | str | None, place: Place, proof: Proof) -> dict[str, int] | None:
    """The first sizes where a run that worked saw other than ``formula`` at ``place``
    (None: none did; a formula that is not in the language disagrees at the first)."""
    compiled = formula if isinstance(formula, int) or formula is None else _compile(formula)
    # sizes of 1 last: torch fixes them when it traces there, so they make a poor sample
    for sizes, seen in sorted(proof.seen, key=lambda run: min(run[0].values(), default=2) < 2):
        value = (
            compiled if isinstance(compiled, int) or compiled is None else _value(compiled, sizes)
        )
        if value is None or value != _seen(seen, place):
            return sizes
    return None


def _check(
    sizes: dict[str, int],
    outcome: Outcome,
    claim: Sequence[Rule] | None,
    compiled: Mapping[Place, int | Compiled],
    proof: Proof,
) -> None:
    """One run against the claim and the formulas."""
    if claim is not None and proof.claim_wrong is None:
        says = all(rule.holds(sizes) for rule in claim)
        if says != outcome.ok:
            proof.claim_wrong = _contradiction(sizes, outcome.ok, claim)
    for path in outcome.changed:
        proof.changed.setdefault(path, sizes)
    if not outcome.ok:
        return
    for place, formula in compiled.items():
        if place in proof.wrong:
            continue
        seen = _seen(outcome.seen, place)
        expected = formula if isinstance(formula, int) else _value(formula, sizes)
        if seen is None or expected != seen:
            proof.wrong[place] = (sizes, seen)


def _seen(seen: Seen, place: Place) -> int | None:
    """The size a run saw at ``place`` (None: no such size there)."""
    path, side, t, j = place
    shapes = seen.get(path)
    if shapes is None:
        return None
    tensors = shapes[0] if side == "input" else shapes[1]
    if t >= len(tensors) or j >= len(tensors[t]):
        return None
    dim = tensors[t][j]
    return dim if isinstance(dim, int) else None


def _value(formula: Compiled, sizes: Mapping[str, int]) -> int | None:
    try:
        value = formula(sizes)
    except ExpressionError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _contradiction(sizes: Mapping[str, int], ok: bool, claim: Sequence[Rule]) -> str:
    if ok:
        broken = ", ".join(r.text for r in claim if not r.holds(sizes))
        return f"at {described(sizes)} the model works, which {broken} excludes"
    return f"at {described(sizes)} the model fails although every constraint holds"


def _coverage(proof: Proof, claim: Sequence[Rule], search: Search, symbols: Sequence[str]) -> None:
    """Symbols the claim lets take several sizes, seen by the runs that worked at fewer
    than :data:`MIN_SEEN` of them."""
    worked = [sizes for sizes, ok in proof.points if ok]
    for name in symbols:
        seen = {sizes[name] for sizes in worked}
        if len(seen) < MIN_SEEN and len(seen) < _possible(name, claim, search):
            proof.unseen.add(name)


def _possible(name: str, claim: Sequence[Rule], search: Search) -> int:
    """How many sizes of ``name`` the claim accepts, with the others at their samples
    (counting to :data:`MIN_SEEN` at most)."""
    count = 0
    for value in range(1, 4 * search.samples[name] + 4):
        sizes = search.tied({**search.samples, name: value}, (name,))
        if all(r.holds(sizes) for r in claim):
            count += 1
            if count >= MIN_SEEN:
                break
    return count


# -- the sizes to check -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Space:
    """Where the sizes to check are drawn: the claim, the searcher of sizes (samples,
    ties), the symbols (the batch ones apart), and which sizes a run can be made at."""

    claim: Sequence[Rule]
    search: Search
    symbols: Sequence[str]
    batch: set[str]
    fits: Callable[[Mapping[str, int]], bool]


def _consecutive(space: _Space) -> list[dict[str, int]]:
    """:data:`RUN` sizes in a row for every symbol at once (those the claim accepts):
    every remainder modulo 2, 4 and 8, where strided layers' formulas differ (a pool with
    ``ceil_mode`` after another is wrong only for H = 4k + 2)."""
    points = []
    for k in range(RUN):
        start = {n: (BATCH_START if n in space.batch else START) + k for n in space.symbols}
        sizes = space.search.tied({**space.search.samples, **start}, ())
        if space.fits(sizes) and all(r.holds(sizes) for r in space.claim):
            points.append(sizes)
    return points


def _smallest(search: Search, symbols: Sequence[str]) -> list[dict[str, int]]:
    """Each symbol alone at 1, every other at its sample, ties or not: where torch
    specializes (a size of 1 broadcasts), the claim is most often wrong."""
    return [{**search.samples, name: 1} for name in symbols]


def _boundaries(claim: Sequence[Rule], search: Search) -> list[dict[str, int]]:
    """For each constraint: the sizes just outside it that keep every other one, and
    the sizes inside nearest them."""
    points: list[dict[str, int]] = []
    for rule in claim:
        others = [r for r in claim if r is not rule]
        outside = search.around_rule(rule, others, broken=True, count=EACH_SIDE)
        points += outside + search.inside_near(outside, rule, others, EACH_SIDE)
    return points


def _spread(space: _Space) -> list[dict[str, int]]:
    """:data:`SPREAD` sizes the claim accepts, drawn from the pools (and the claim's own
    numbers), each symbol independently: the same every time."""
    claim, search, symbols, fits = space.claim, space.search, space.symbols, space.fits
    batch = space.batch
    draw = random.Random(0)
    pools = {name: _pool(name, claim, search, name in batch) for name in symbols}
    points: list[dict[str, int]] = []
    for _ in range(SPREAD * 40):
        if len(points) >= SPREAD:
            break
        values = {name: draw.choice(pool) for name, pool in pools.items()}
        while not fits(values) and _shrink(values, pools):
            pass  # many symbols: the largest comes down until the inputs fit
        sizes = search.tied({**search.samples, **values}, ())
        possible = all(v >= 1 for v in sizes.values()) and all(r.holds(sizes) for r in claim)
        if possible and sizes not in points and fits(sizes):
            points.append(sizes)
    for name in symbols:  # each symbol at enough sizes, the others at their samples
        seen = {p[name] for p in points}
        for value in pools[name]:
            if len(seen) >= MIN_SEEN + 1:
                break
            sizes = search.tied({**search.samples, name: value}, ())
            if sizes[name] != value:
                break  # a name tied to others: it moves with them
            if value not in seen and fits(sizes) and all(r.holds(sizes) for r in claim):
                points.append(sizes)
                seen.add(value)
    return points


def _shrink(values: dict[str, int], pools: Mapping[str, Sequence[int]]) -> bool:
    """The largest value down to the next smaller one of its pool (False: none is)."""
    for name in sorted(values, key=lambda n: -values[n]):
        smaller = [v for v in pools[name] if v < values[name]]
        if smaller:
            values[name] = max(smaller)
            return True
    return False


def _pool(name: str, claim: Sequence[Rule], search: Search, batch: bool) -> list[int]:
    """The sizes to draw ``name`` from: those its own constraints accept among the pool,
    the numbers the claim mentions and twice the sample, else the pool."""
    base = set(BATCH_POOL if batch else POOL) | {2 * search.samples[name] + 1}
    for rule in claim:
        base |= {int(n) + d for n in rule.numbers for d in (-1, 0, 1) if int(n) + d >= 1}
    own = [r for r in claim if r.reads == (name,)]
    accepted = sorted(v for v in base if all(r.holds({**search.samples, name: v}) for r in own))
    if len(accepted) < MIN_SEEN:  # a rare pattern (a multiple of 224): look further
        accepted = _accepted_values(name, own, search, MIN_SEEN + 3)
    return accepted or sorted(base)


def _accepted_values(name: str, own: Iterable[Rule], search: Search, count: int) -> list[int]:
    rules = list(own)
    found = []
    for value in range(1, 64 * search.samples[name] + 1):
        if all(r.holds({**search.samples, name: value}) for r in rules):
            found.append(value)
            if len(found) >= count:
                break
    return found


def proven_shapes(
    formulas: Formulas, proof: Proof
) -> dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]:
    """``formulas`` with every size the proof did not establish as None."""
    out = {}
    for path, sides in formulas.items():
        done = []
        for side, shapes in zip(("input", "output"), sides, strict=True):
            done.append(
                tuple(
                    tuple(
                        None if _unproven((path, side, t, j), dim, proof) else dim
                        for j, dim in enumerate(shape)
                    )
                    for t, shape in enumerate(shapes)
                )
            )
        out[path] = (done[0], done[1])
    return out


def _unproven(place: Place, dim: int | str | None, proof: Proof) -> bool:
    if place in proof.wrong or place in proof.unwritten or proof.stopped:
        return True
    return isinstance(dim, str) and any(name in proof.unseen for name in names_in(dim))
