"""Modules + input shapes → a :class:`~shapecli.report.Report`, by one forward pass.

The pass runs on the meta device: tensors have shapes and dtypes but no memory, so it
costs the same for a 2-layer MLP and a 70B-parameter decoder. This module only runs
the pass; the steps are separate modules, each knowing nothing of the ones after it:

* :mod:`shapecli.record` — hooks that keep one record per module call;
* :mod:`shapecli.replay` — repeat copies that replicate their first copy;
* :mod:`shapecli.assemble` — records + module tree → rows and totals;
* :mod:`shapecli.diagnose` — a failure → one located problem;
* :mod:`shapecli.analyses` — what is measured besides (FLOPs, training memory).

The pass is one :func:`~shapecli.observe.observe`: ``no_grad``, eval mode, hooks
removed and modes restored in ``finally``; then a check that no parameter stayed
uninitialized.

A model with a layer that routes rows by their values (an MoE) runs again, dealt
otherwise, to find what depends on the routing (:mod:`shapecli.routing`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
from torch import nn

from shapecli.analyses import Analysis, Done, Flops, run_after
from shapecli.assemble import assemble
from shapecli.construct import BuiltModel, layer_warning
from shapecli.diagnose import Explainer, in_tree, is_internal, open_calls
from shapecli.errors import Problem
from shapecli.inputs import InputSpec, input_names
from shapecli.layers.auto import AutoBuildError, AutoSized
from shapecli.memory import buffer_bytes
from shapecli.observe import observe
from shapecli.record import HookFailure, Recorder
from shapecli.replay import Replayer, repeat_copies
from shapecli.report import Memory, Report
from shapecli.routing import (
    Dealing,
    activations_blind,
    flops_blind,
    routed_blind,
    routed_problem,
    routes,
)
from shapecli.spec.model import at_or_above
from shapecli.speedups import lean_meta


@contextlib.contextmanager
def default_dtype(name: str | None) -> Iterator[None]:
    """Within the block, new parameters (and float inputs) are ``name`` (a float dtype)."""
    if name is None:
        yield
        return
    from shapecli.inputs import DTYPES

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, DTYPES[name]))
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def make_inputs(inputs: Sequence[InputSpec]) -> list[torch.Tensor]:
    """Meta tensors for concrete input declarations. Floating-point inputs declared
    without a dtype (float32) take the default dtype, so ``--dtype bfloat16`` runs the
    whole model in bfloat16."""
    tensors = []
    for spec in inputs:
        dtype = getattr(torch, spec.dtype)
        if dtype == torch.float32:
            dtype = torch.get_default_dtype()
        tensors.append(torch.empty(tuple(int(d) for d in spec.dims), dtype=dtype, device="meta"))
    return tensors


def dry_run(
    built: BuiltModel,
    inputs: Sequence[InputSpec],
    name: str,
    spec_file: str,
    replay: bool = True,
    shortcuts: bool = True,
    measure: Sequence[Analysis] = (),
) -> Report:
    """Run the model once on meta tensors and report what every layer did.

    With ``replay``, copies made by ``repeat:`` that receive what their first copy did
    replicate it instead of running (:mod:`shapecli.replay`); with ``shortcuts``, the
    pass runs in :func:`~shapecli.speedups.lean_meta` (no dynamo or sympy import,
    recurrent layers by shape rule). Either way the report is the same. An exception
    raised by shapecli's own code propagates (it is a bug, exit 3). ``measure`` are the
    analyses to make besides (:mod:`shapecli.analyses`: FLOPs, the training estimate).
    """
    model = built.model
    recorder = Recorder(model, set(built.entries))
    tensors = make_inputs(inputs)
    modes: list[contextlib.AbstractContextManager[object]] = []
    if shortcuts:
        modes.append(lean_meta())
    modes += [mode for analysis in measure if (mode := analysis.during(recorder)) is not None]
    if built.traced:
        from shapecli.trace import Dataflow

        recorder.dataflow = dataflow = Dataflow()
        dataflow.enter_inputs(tensors, input_names(tuple(inputs)))
        modes.append(dataflow)
    copies = repeat_copies(model, built.entries) if replay else []
    replayer = Replayer(model, copies, recorder.first_call, recorder.replayed)
    error = observe(
        model, tensors, hooks=(recorder, replayer), modes=modes, warn=recorder.warn
    ).error
    _raise_internal(error)
    # Before the ties are made (a replayed copy gets new parameters in every pass), and
    # only after a pass that worked: another could size lazy layers this one never reached.
    routed = routes(model)
    counting = any(isinstance(analysis, Flops) for analysis in measure)
    dealt = packed = None
    if routed and error is None:
        dealt = _dealt(built, inputs, "other", replay, shortcuts)
        packed = _dealt(built, inputs, "packed", replay, shortcuts, Flops() if counting else None)
    explainer = Explainer(
        built, recorder, name, tuple(inputs), {id(t): i for i, t in enumerate(tensors)}
    )
    calls = open_calls(error, recorder) if error is not None else []
    errors: list[Problem] = [explainer.mismatch(error, calls)] if error is not None else []
    if routed:
        errors = [routed_problem(problem, model) for problem in errors]
    errors.extend(built.apply_ties())
    failed = {id(c) for c in in_tree(calls)}
    rows, totals = assemble(built, recorder, name, failed, input_names(tuple(inputs)))
    routing: list[Problem] = []
    if routed:
        rows = routed_blind(rows, dealt, model)
    if packed is not None and counting:
        rows, routing = flops_blind(built, rows, packed)
    if packed is not None:
        packed_totals = assemble(built, packed, name, set(), input_names(tuple(inputs)))[1]
        if packed_totals.activation_bytes != totals.activation_bytes:
            totals = replace(totals, activation_bytes=None)
            routing.append(activations_blind(built))
    if error is None:
        errors.extend(uninitialized(built))
    memory = (
        Memory(
            params=totals.param_bytes,
            buffers=buffer_bytes(model) if _sized(model) else 0,
            forward_activations=totals.activation_bytes,
        )
        if totals.activation_bytes is not None
        else None  # the routing decides them (see the warning): no memory figures
    )
    report = Report(
        name=name,
        spec=spec_file,
        inputs=tuple(inputs),
        rows=tuple(rows),
        totals=replace(totals, memory=memory),
        errors=tuple(errors),
        warnings=(*_warnings(built, recorder), *routing),
    )
    return run_after(measure, Done(built, tuple(inputs), report, shortcuts))


def _raise_internal(error: Exception | None) -> None:
    """Raise ``error`` (its cause, for our own wrappers) when shapecli's code raised it:
    a bug, exit 3, never the user's mismatch."""
    if error is not None and is_internal(error):
        raise (
            error.__cause__
            if isinstance(error, HookFailure | AutoBuildError) and error.__cause__
            else error
        )


def _dealt(
    built: BuiltModel,
    inputs: Sequence[InputSpec],
    dealing: str,
    replay: bool,
    shortcuts: bool,
    flops: Flops | None = None,
) -> Recorder:
    """Another pass (see the module docstring): the model the first pass sized, on the
    same inputs, each routing layer dealing as ``dealing`` says. Shapes, and FLOPs with
    ``flops``; no warnings (the first pass gave them)."""
    model = built.model
    recorder = Recorder(model, set(built.entries))
    copies = repeat_copies(model, built.entries) if replay else []
    replayer = Replayer(model, copies, recorder.first_call, recorder.replayed)
    modes: list[contextlib.AbstractContextManager[object]] = [lean_meta()] if shortcuts else []
    if flops is not None:
        modes.append(flops.during(recorder))
    hooks = (recorder, replayer, Dealing(model, dealing))
    _raise_internal(observe(model, make_inputs(inputs), hooks=hooks, modes=modes).error)
    return recorder


def _sized(model: nn.Module) -> bool:
    """Every buffer has a size (a lazy layer that never ran has none yet)."""
    from torch.nn.parameter import UninitializedBuffer

    return not any(isinstance(b, UninitializedBuffer) for b in model.buffers())


def _warnings(built: BuiltModel, recorder: Recorder) -> tuple[Problem, ...]:
    """Warnings from building and running the layers, each once, at its entry."""
    found = list(built.warnings)
    for path, message in recorder.warnings:
        found.append(layer_warning(message, at_or_above(path, built.entries), path))
    return tuple(dict.fromkeys(found))


def uninitialized(built: BuiltModel) -> list[Problem]:
    """One problem per layer whose lazy parameters never got a size."""
    from torch.nn.parameter import UninitializedParameter

    problems = []
    for path, module in built.model.named_modules():
        names = [n for n, p in module._parameters.items() if isinstance(p, UninitializedParameter)]
        if isinstance(module, AutoSized):
            names = ["its `auto` sizes"]
        if names:
            entry = at_or_above(path, built.entries)
            problems.append(
                Problem(
                    code="uninitialized",
                    message=f"layer {path} ({type(module).__name__}) never ran, so "
                    f"{' and '.join(names)} never got a size",
                    source=entry.source if entry else None,
                    path=path,
                    hint="give the layer its input size explicitly, or make sure it is used",
                )
            )
    return problems
