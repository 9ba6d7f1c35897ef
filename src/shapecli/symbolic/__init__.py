"""Symbolic sizes: ``--input Bx3xHxW`` shows every shape as a formula in the user's
names, and which sizes the model accepts — each checked by concrete runs before it is
printed, and what cannot be established said to be "not derived", with why.

How, in six steps, each made of dry runs the rest of shapecli already trusts:

1. **A concrete run at sample sizes** (:mod:`~shapecli.symbolic.samples`). Lazy layers
   get their sizes here. If the model fails there and the user did not choose the
   samples, other sizes are tried (a window of 7 needs a multiple of 7); if it fails
   at all of them, that is the report, with the sizes tried named.
2. **Sizes that follow the input**: one more run with every symbol doubled (or, if
   the model fails there, halved), from a fresh build: a layer whose *inferred* size
   changes depends on the input's size (a ``LazyLinear`` after a ``Flatten`` over H
   and W). It cannot work for all sizes: an error naming the symbols (found one by
   one only when something changed, or when neither run worked).
3. **The symbolic run** (:mod:`~shapecli.symbolic.fake`): the sized model on torch's
   fake tensors with the symbols as sizes; every module's shapes as formulas, and what
   torch recorded about the sizes.
4. **What sizes it accepts** (:mod:`~shapecli.symbolic.rules`): torch's records as
   rules over the names, each kept only if a concrete run just outside it fails.
5. **The proof** (:mod:`~shapecli.symbolic.proof`): runs at and around every boundary
   of the claim and at sizes spread over it, chosen apart from the samples; every
   formula must equal what each working run saw, and the claim must say which runs
   work. A formula a run contradicts is derived again at that run's sizes, and joined
   to the first by a condition torch recorded if need be (:mod:`~shapecli.symbolic.
   pieces`); what still disagrees, or the runs did not reach, is not derived.
6. The report of step 1, its shapes replaced by the formulas that were proven (a size
   not derived is None: ``?`` in a table, ``null`` in JSON), with the accepted sizes
   (None when not derived) and a ``not-derived`` warning for each thing left out.

Runs are cached by sizes and go through the sized model (:mod:`~shapecli.symbolic.runs`);
steps 2 to 5 share one budget, and what it does not leave time for is not derived.
Parameter shapes stay concrete: they cannot depend on the input in a model that works
for all sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from shapecli.errors import Problem, fail
from shapecli.inputs import InputSpec
from shapecli.report import Report, Row, Shape
from shapecli.routing import not_derived
from shapecli.spec.model import Spec
from shapecli.symbolic import proof as proving
from shapecli.symbolic.fake import Trace, trace
from shapecli.symbolic.pieces import in_pieces
from shapecli.symbolic.rules import Rule, accepted, make_search
from shapecli.symbolic.runs import DEFAULT_BUDGET, Budget, BudgetExhausted, Runner
from shapecli.symbolic.samples import (
    Sizes,
    check_given,
    described,
    fallbacks,
    fits,
    samples_for,
    symbols_of,
)

__all__ = ["DEFAULT_BUDGET", "inspect_symbolic", "symbols_of"]

#: The share of the budget the symbolic run may take: the rest is for the runs.
TRACE_SHARE = 0.5


def inspect_symbolic(
    spec: Spec,
    inputs: tuple[InputSpec, ...],
    allow_import: Iterable[str] = (),
    samples: Mapping[str, int] | None = None,
    budget: float = DEFAULT_BUDGET,
) -> Report:
    """The report of a spec whose inputs have symbolic sizes (see the module
    docstring). ``samples`` chooses sizes for the first run (``--sample``); ``budget``
    is the seconds everything after the first run may take."""
    symbols = symbols_of(inputs)
    given = dict(samples or {})
    check_given(given, symbols)
    chosen = samples_for(inputs, spec.inputs, given)
    if given and not fits(inputs, chosen):
        raise fail(
            "usage",
            f"--sample {described(given)}: an input would have more than 2**40 elements "
            "at these sizes; give smaller samples",
        )
    runner = Runner(spec, inputs, tuple(allow_import), Budget(budget))
    first, chosen = _first_run(runner, inputs, chosen, given)
    base = replace(
        first,
        inputs=inputs,
        symbols=tuple(symbols),
        samples=tuple(chosen.items()),
        totals=replace(first.totals, activation_bytes=None, flops=None, memory=None),
    )
    if not first.ok:
        return replace(base, constraints=None)
    dependent = _size_dependent(runner, first, chosen, symbols)
    if dependent:
        return replace(base, errors=tuple(dependent), constraints=None)
    traced = _traced(runner, inputs, chosen)
    claim, assumptions, why_not, proof = _proven(traced, chosen, runner, inputs, symbols)
    formulas, still = in_pieces(
        traced, proof, chosen, runner.budget, lambda at: _traced(runner, inputs, at)
    )
    proof.wrong = {place: proof.wrong[place] for place in still}
    proven = proving.proven_shapes(formulas, proof)
    rows = tuple(_with_formulas(row, proven) for row in first.rows)
    errors = _changed_with_size(proof, first)
    constraints = None
    if claim is not None and proof.claim_wrong is None and not proof.stopped:
        constraints = _texts(claim, chosen)
    notes = _not_derived(first, traced, proof, rows, claim, why_not)
    return replace(
        base,
        rows=rows,
        errors=tuple(errors),
        constraints=constraints if not errors else None,
        warnings=(*first.warnings, *assumptions, *notes),
    )


# -- 1. the first run -----------------------------------------------------------------------------


def _first_run(
    runner: Runner, inputs: Sequence[InputSpec], samples: dict[str, int], given: Sizes
) -> tuple[Report, dict[str, int]]:
    """The first run at ``samples``; where it fails, at other samples in turn (see
    :func:`~shapecli.symbolic.samples.fallbacks`) until one works. The report of the
    first sizes tried is kept when none does, with the sizes tried named."""
    report = runner.first(samples)
    runner.budget = Budget(runner.budget.seconds)  # from here on: that was the inspection
    if report.ok:
        return report, samples
    tried = []
    for values in fallbacks(inputs, samples, given):
        if runner.budget.left() <= 0:
            break
        tried.append(values)
        other = runner.first(values)
        if other.ok:
            return other, values
    also = "; also at " + "; ".join(described(v) for v in tried) if tried else ""
    note = (
        f"with the sample sizes {described(samples)}{also} (choose others with --sample NAME=SIZE)"
    )
    errors = tuple(replace(e, notes=(*e.notes, note)) for e in report.errors)
    return replace(report, errors=errors), samples


# -- 2. sizes that follow the input ---------------------------------------------------------------


def _size_dependent(
    runner: Runner, first: Report, samples: dict[str, int], symbols: list[str]
) -> list[Problem]:
    """One problem per inferred layer whose size changes with a symbol."""
    depends: dict[str, list[str]] = {}
    try:
        for moved in (
            {name: 2 * value for name, value in samples.items()},
            {name: max(1, value // 2) for name, value in samples.items()},
        ):
            if all(moved[n] != samples[n] for n in symbols):
                together = runner.fresh(moved)
                if together.ok and not together.changed:
                    return []  # every symbol moved, and no inferred size with them
                if together.ok:
                    break
        for symbol in symbols:
            for path in _changed_by(runner, samples, symbol):
                depends.setdefault(path, []).append(symbol)
    except BudgetExhausted:
        return []  # the proof's runs find a changing size too, or say they ran out
    return [_dependent(first, runner, path, names) for path, names in depends.items()]


def _changed_by(runner: Runner, samples: dict[str, int], symbol: str) -> tuple[str, ...]:
    """The inferred layers whose sizes change when ``symbol`` alone doubles (past an
    upper bound: halves). If that fails alone, every name at the same sample size moves
    along: they may be tied (a mask as long as its sequence)."""
    sample = samples[symbol]
    alike = [name for name, value in samples.items() if value == sample]
    for names in [[symbol], alike] if len(alike) > 1 else [[symbol]]:
        for value in (sample * 2, max(2, sample // 2)):
            if value != sample:
                outcome = runner.fresh({**samples, **dict.fromkeys(names, value)})
                if outcome.ok:
                    return outcome.changed
    return ()


def _dependent(first: Report, runner: Runner, path: str, names: Sequence[str]) -> Problem:
    assert runner.built is not None
    entry = runner.built.entries.get(path)
    row = next(r for r in first.rows if r.path == path)
    listed = " and ".join(names)
    return Problem(
        "size-dependent",
        f"layer {path} ({row.type}) takes its size from its input, and that size changes "
        f"with {listed}: a layer's parameters cannot depend on the input's size",
        entry.source if entry else None,
        path=path,
        layer_type=entry.type if entry else row.type,
        input_shapes=row.input_shapes,
        hint=f"fix {listed} (e.g. --input with numbers there), or pool to a fixed size "
        "first (e.g. `AdaptiveAvgPool2d: 1`)",
    )


def _changed_with_size(proof: proving.Proof, first: Report) -> list[Problem]:
    """Inferred layers the proof's runs found taking other sizes at other sizes."""
    problems = []
    for path, sizes in proof.changed.items():
        row = next((r for r in first.rows if r.path == path), None)
        problems.append(
            Problem(
                "size-dependent",
                f"layer {path} ({row.type if row else '?'}) takes its size from its input, "
                f"and at {described(sizes)} that size is another than at the samples: a "
                "layer's parameters cannot depend on the input's size",
                row.source if row else None,
                path=path,
                layer_type=row.type if row else None,
                hint="give those sizes as numbers, or pool to a fixed size first",
            )
        )
    return problems


# -- 3, 4. the symbolic run and the claim ----------------------------------------------------------


def _traced(runner: Runner, inputs: Sequence[InputSpec], samples: Sizes) -> Trace:
    assert runner.built is not None
    try:
        return trace(runner.built, inputs, samples, runner.budget, TRACE_SHARE)
    except BudgetExhausted:
        return Trace({}, None, "the budget ran out before torch's symbolic run began")


#: How often a claim a run contradicted is searched for again, with what runs showed.
ROUNDS = 3


def _proven(
    traced: Trace, samples: Sizes, runner: Runner, inputs: Sequence[InputSpec], symbols: list[str]
) -> tuple[list[Rule] | None, list[Problem], str | None, proving.Proof]:
    """The claim, the warnings of its search, why it is not derived (if not) and the
    proof. Sizes where the proof saw the model work though the claim excluded them, or
    fail though it accepted them, go back into the search, which then knows what it
    kept wrongly or what torch did not record (runs are cached: the proof's next round
    costs only sizes it did not check before)."""
    batch = {s.dims[0] for s in inputs if s.dims and isinstance(s.dims[0], str)}
    working: list[dict[str, int]] = []
    failing: list[dict[str, int]] = []
    proof: proving.Proof | None = None
    for _ in range(ROUNDS):
        claim, assumptions, why_not = _claim(traced, samples, runner, working, failing)
        search = make_search(
            samples, traced.facts.ranges if traced.facts else {}, _kept_ties(traced, claim)
        )
        proof = proving.prove(
            traced.formulas,
            claim,
            search,
            symbols,
            batch,
            runner,
            lambda v: fits(inputs, v),
            [sizes for sizes, _ in proof.points] if proof is not None else (),
        )
        if claim is None or proof.stopped or runner.budget.left() <= 0:
            break
        said = {
            tuple(sizes.items()): all(r.holds(sizes) for r in claim) for sizes, _ in proof.points
        }
        excluded = [s for s, ok in proof.points if ok and not said[tuple(s.items())]]
        missed = [s for s, ok in proof.points if not ok and said[tuple(s.items())]]
        if not excluded and not missed:
            break
        working += excluded
        failing += missed
    assert proof is not None, "at least one round"
    return claim, assumptions, why_not, proof


def _claim(
    traced: Trace,
    samples: Sizes,
    runner: Runner,
    working: Sequence[Sizes],
    failing: Sequence[Sizes],
) -> tuple[list[Rule] | None, list[Problem], str | None]:
    """The constraints the search kept (None: not derived, and why), and warnings for
    what torch assumed that the formula language cannot write."""
    if traced.facts is None:
        return None, [], traced.stopped
    try:
        kept, assumptions = accepted(
            traced.facts, samples, runner, working, failing, runner.budget.check
        )
    except BudgetExhausted:
        return None, [], "the budget ran out while testing what torch recorded about the sizes"
    return kept, assumptions, None


def _kept_ties(traced: Trace, claim: Sequence[Rule] | None) -> dict[str, object]:
    """The ties the claim kept: only those move names along in the proof's sizes."""
    if traced.facts is None:
        return {}
    texts = {r.text for r in claim or ()}
    return {
        name: expr
        for name, expr in traced.facts.ties.items()
        if any(t.startswith(f"{name} == ") for t in texts)
    }


def _texts(claim: Sequence[Rule], samples: Sizes) -> tuple[str, ...]:
    """The constraints as printed: a name's lower and upper bound as one range
    (``31 <= H <= 34``, still Python)."""
    lower = {r.reads[0]: r for r in claim if _bound(r, ">=")}
    upper = {r.reads[0]: r for r in claim if _bound(r, "<=")}
    texts = []
    for rule in claim:
        name = rule.reads[0] if rule.reads else ""
        if rule is upper.get(name) and name in lower:
            continue  # written with its lower bound
        if rule is lower.get(name) and name in upper:
            low, high = rule.numbers[-1], upper[name].numbers[-1]
            texts.append(f"{name} == {low}" if low == high else f"{low} <= {name} <= {high}")
        else:
            texts.append(rule.text)
    return tuple(texts)


def _bound(rule: Rule, op: str) -> bool:
    name = rule.reads[0] if len(rule.reads) == 1 else None
    return (
        name is not None
        and rule.text.startswith(f"{name} {op} ")
        and rule.text.split()[-1].isdigit()
    )


# -- 6. the report --------------------------------------------------------------------------------


def _with_formulas(
    row: Row, proven: Mapping[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]
) -> Row:
    """``row`` with its shapes as proven formulas; a row the symbolic run did not reach
    keeps its structure, every size not derived. A size the first run did not derive
    (one that depends on an MoE's routing: the runs that prove formulas deal evenly,
    as the symbolic run does) stays not derived."""
    found = proven.get(row.path)
    if found is None:
        return replace(
            row,
            input_shapes=not_derived(row.input_shapes),
            output_shapes=not_derived(row.output_shapes),
        )
    return replace(
        row,
        input_shapes=_still_blind(row.input_shapes, found[0]),
        output_shapes=_still_blind(row.output_shapes, found[1]),
    )


def _still_blind(first: tuple[Shape, ...], formulas: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """``formulas``, with None wherever ``first`` (the first run's) has None."""
    blind = {(t, j) for t, shape in enumerate(first) for j, d in enumerate(shape) if d is None}
    return tuple(
        tuple(None if (t, j) in blind else d for j, d in enumerate(shape))
        for t, shape in enumerate(formulas)
    )


def _not_derived(
    first: Report,
    traced: Trace,
    proof: proving.Proof,
    rows: Sequence[Row],
    claim: Sequence[Rule] | None,
    why_not: str | None,
) -> list[Problem]:
    """One ``not-derived`` warning per reason something was left out."""
    by_path = {row.path: row for row in first.rows}
    notes = []
    hint_budget = "raise --symbolic-budget (seconds), or give some sizes as numbers"
    if traced.stopped:
        missing = [r.path for r in rows if r.path and r.path not in traced.formulas]
        notes.append(
            _warning(
                f"{traced.stopped}: the formulas of {_listed(missing)} are not derived",
                by_path.get(missing[0]) if missing else None,
                hint_budget if "budget" in traced.stopped else None,
            )
        )
    if proof.stopped:
        notes.append(
            _warning(
                "the budget ran out before every formula and constraint was checked by a "
                "concrete run: those not checked are not derived",
                None,
                hint_budget,
            )
        )
    wrong = sorted({place[0] for place in proof.wrong}, key=list(by_path).index)
    if wrong and not proof.stopped:
        notes.append(_wrong_formulas(wrong, traced, proof, by_path))
    unwritten = sorted(
        {place[0] for place in proof.unwritten} - set(wrong), key=list(by_path).index
    )
    if unwritten:
        unwritten = [*(p for p in unwritten if p), *(p for p in unwritten if not p)]
        example = next(p for p in sorted(proof.unwritten) if p[0] == unwritten[0])
        text = _formula_at(traced, example)
        notes.append(
            _warning(
                f"torch computes sizes of {_listed(unwritten)} as `{text}`, which the formula "
                "language (integer arithmetic) cannot write: those sizes are not derived",
                by_path.get(unwritten[0]),
                "give those sizes as numbers to see them",
            )
        )
    if proof.unseen and not proof.stopped:
        names = ", ".join(sorted(proof.unseen))
        notes.append(
            _warning(
                f"the runs that worked saw {names} at fewer than {proving.MIN_SEEN} sizes: "
                f"formulas in {names} are not derived",
                None,
                None,
            )
        )
    reason = why_not or proof.claim_wrong
    if reason is not None or (claim is not None and proof.stopped):
        notes.append(
            _warning(
                "the sizes the model accepts are not derived: "
                + (reason or "not every check was made"),
                None,
                hint_budget if reason is None or "budget" in reason else None,
            )
        )
    return notes


def _wrong_formulas(
    wrong: Sequence[str], traced: Trace, proof: proving.Proof, by_path: Mapping[str, Row]
) -> Problem:
    """The warning for formulas runs contradicted, naming the first layer whose output
    is wrong while its input is right: where the wrong formula came from."""
    culprit = _culprit(wrong, proof)
    place = (
        next(p for p in sorted(proof.wrong) if p[0] == culprit and p[1] == "output")
        if any(p[0] == culprit and p[1] == "output" for p in proof.wrong)
        else next(p for p in sorted(proof.wrong) if p[0] == culprit)
    )
    sizes, seen = proof.wrong[place]
    formula = _formula_at(traced, place)
    row = by_path.get(culprit)
    who = f"layer {culprit} ({row.type})" if row and culprit else "the model"
    wrong = [culprit, *(p for p in wrong if p and p != culprit), *(p for p in wrong if not p)]
    there = "has no such size" if seen is None else f"gives {seen}"
    frozen = (
        " (torch's symbolic run fixed it to its value at the samples)"
        if isinstance(formula, int)
        else ""
    )
    return _warning(
        f"the formulas of {_listed(wrong)} are not derived: a concrete run contradicts "
        f"them — at {described(sizes)}, {who} {there} where its {place[1]} formula says "
        f"`{formula}`{frozen}",
        row,
        "give the sizes as numbers to see them exactly",
    )


def _culprit(wrong: Sequence[str], proof: proving.Proof) -> str:
    """The first row (the model's own last) whose output is wrong and input right."""
    inputs_wrong = {p[0] for p in proof.wrong if p[1] == "input"}
    outputs_wrong = [
        path for path in wrong if any(p[0] == path and p[1] == "output" for p in proof.wrong)
    ]
    for path in [*(p for p in outputs_wrong if p), *outputs_wrong]:
        if path not in inputs_wrong:
            return path
    return wrong[0]


def _formula_at(traced: Trace, place: proving.Place) -> int | str | None:
    path, side, t, j = place
    shapes = traced.formulas[path][0 if side == "input" else 1]
    return shapes[t][j]


def _listed(paths: Sequence[str], most: int = 4) -> str:
    """``rows 3, 4 and 5``; past ``most``, ``rows 3, 4, 5, 6 and 12 more`` (the model's
    own row, which repeats what its last layer gives, last)."""
    paths = [*(p for p in paths if p), *(p for p in paths if not p)]
    shown = [p or "(the model)" for p in paths[:most]]
    if len(paths) > most:
        return f"rows {', '.join(shown)} and {len(paths) - most} more"
    if len(shown) == 1:
        return f"row {shown[0]}"
    return f"rows {', '.join(shown[:-1])} and {shown[-1]}"


def _warning(message: str, row: Row | None, hint: str | None) -> Problem:
    return Problem(
        "not-derived",
        message,
        row.source if row else None,
        severity="warning",
        path=row.path if row else None,
        layer_type=row.type if row else None,
        hint=hint,
    )
