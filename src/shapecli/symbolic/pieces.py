"""Formulas in pieces: where a concrete run contradicts a formula, derive the size again
at the sizes of that run.

torch's symbolic run follows one branch of every size-dependent choice a kernel makes,
the one the samples take: a pool with ``ceil_mode`` and padding gives ``(H + 1)//2 + 1``
for an even H, and drops the last window for an odd one. When a run at other sizes
contradicts a formula, the symbolic run is made again with those sizes as its samples:
it follows the other branch. Its formula is taken where it agrees with every run that
worked; otherwise the two are joined by a condition torch recorded on the first run
that the contradicting sizes break (written as plainly as it can be: ``H % 2 == 0``
for ``2*((H + 1)//2) < H + 1``): ``(H + 1)//2 + 1 if H % 2 == 0 else (H + 1)//2``,
taken only if it too agrees with every run that worked. What no such formula fits
stays not derived. Each further symbolic run comes out of the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shapecli.spec.expressions import names_in
from shapecli.symbolic.fake import Formulas, Trace
from shapecli.symbolic.proof import Place, Proof, agrees, disagreement
from shapecli.symbolic.rules import Rule, fit, plain_rules, rules_of
from shapecli.symbolic.runs import Budget
from shapecli.symbolic.samples import Sizes

#: How many more symbolic runs the formulas of one report may take.
MORE_RUNS = 3


def in_pieces(
    traced: Trace,
    proof: Proof,
    samples: Sizes,
    budget: Budget,
    again: Callable[[Sizes], Trace],
) -> tuple[Formulas, set[Place]]:
    """The formulas with what runs contradicted derived again where it can be, and the
    places still not derived."""
    formulas = {
        path: (list(map(list, ins)), list(map(list, outs)))
        for path, (ins, outs) in traced.formulas.items()
    }
    wrong = set(proof.wrong)
    conditions = _conditions(traced, samples)
    for _ in range(MORE_RUNS):
        if not wrong or budget.left() <= 0 or traced.facts is None:
            break
        first = min(wrong, key=_order(traced))
        at = disagreement(_formula(formulas, first), first, proof) or proof.wrong[first][0]
        other = again(at)
        if other.stopped:
            break
        # the first run's branches the new sizes leave, the new run's they take
        branches = [(text, False) for text, holds in conditions if not holds(at)]
        branches += [(text, True) for text, holds in _conditions(other, at) if not holds(samples)]
        for place in sorted(wrong):
            found = _piece(place, _formula(formulas, place), other, branches, proof)
            if found is not None:
                _set(formulas, place, found)
                wrong.discard(place)
    done: Formulas = {
        path: (tuple(map(tuple, ins)), tuple(map(tuple, outs)))
        for path, (ins, outs) in formulas.items()
    }
    return done, wrong


def _piece(
    place: Place,
    mine: int | str | None,
    other: Trace,
    branches: Sequence[tuple[str, bool]],
    proof: Proof,
) -> int | str | None:
    """The other run's formula at ``place`` if every run agrees with it; else the two
    joined by the first branch condition with which every run agrees (``True``: a
    condition of the other run's, which picks its formula); else None."""
    path, side, t, j = place
    shapes = other.formulas.get(path)
    if shapes is None:
        return None
    tensors = shapes[0] if side == "input" else shapes[1]
    if t >= len(tensors) or j >= len(tensors[t]):
        return None
    theirs = tensors[t][j]
    if agrees(theirs, place, proof):
        return theirs
    if mine is None or theirs is None:
        return None
    reads = names_in(str(mine)) | names_in(str(theirs))
    for text, picks_theirs in branches:
        if names_in(text) <= reads:
            first, second = (theirs, mine) if picks_theirs else (mine, theirs)
            joined = f"{_grouped(first)} if {text} else {_grouped(second)}"
            if agrees(joined, place, proof):
                return joined
    return None


def _grouped(formula: int | str) -> str:
    text = str(formula)
    return f"({text})" if " if " in text else text


def _conditions(traced: Trace, samples: Sizes) -> list[tuple[str, Callable[[Sizes], bool]]]:
    """What torch checked in the first run, in its plainest form: the branches it took."""
    if traced.facts is None:
        return []
    found: dict[str, Callable[[Sizes], bool]] = {}
    for rule in rules_of(traced.facts):
        if rule.holds is None or not rule.holds(samples):
            continue
        for plain in _plainly(rule, samples):
            if plain.holds is not None:
                found.setdefault(plain.text, plain.holds)
    return list(found.items())


def _plainly(rule: Rule, samples: Sizes) -> list[Rule]:
    """``rule`` as a plain range or multiple of one name, if it is one (``H % 2 == 0``
    for ``2*((H + 1)//2) < H + 1``), else as it is."""
    if len(rule.reads) != 1:
        return [rule]
    name = rule.reads[0]
    top = max(4 * samples[name], 64)
    accepted = [v for v in range(1, top + 1) if rule.holds({**samples, name: v})]
    pattern = fit(accepted, top) if accepted else None
    if pattern is None:
        return [rule]
    plain = plain_rules(name, pattern, (rule,))
    if len(plain) != 1:
        return [rule]
    return plain


def _order(traced: Trace) -> Callable[[Place], tuple[int, Place]]:
    """Layers in the order they ran, outputs before the inputs of the next, the model's
    own row (which repeats its last layer's) last: the first is where a wrong formula
    came from."""
    rank = {path: i for i, path in enumerate(traced.formulas) if path}
    last = len(rank) + 1
    return lambda place: (2 * rank.get(place[0], last) + (place[1] == "input"), place)


def _formula(
    formulas: Mapping[str, tuple[list[list[int | str | None]], list[list[int | str | None]]]],
    place: Place,
) -> int | str | None:
    path, side, t, j = place
    return formulas[path][0 if side == "input" else 1][t][j]


def _set(
    formulas: Mapping[str, tuple[list[list[int | str | None]], list[list[int | str | None]]]],
    place: Place,
    value: int | str,
) -> None:
    path, side, t, j = place
    formulas[path][0 if side == "input" else 1][t][j] = value
