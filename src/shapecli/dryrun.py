"""Modules + input shapes → a :class:`~shapecli.report.Report`, by one forward pass.

The pass runs on the meta device: tensors have shapes and dtypes but no memory, so it
costs the same for a 2-layer MLP and a 70B-parameter decoder. This module only runs
the pass; the steps are separate modules, each knowing nothing of the ones after it:

* :mod:`shapecli.record` — hooks that keep one record per module call;
* :mod:`shapecli.replay` — repeat copies that replicate their first copy;
* :mod:`shapecli.assemble` — records + module tree → rows and totals;
* :mod:`shapecli.diagnose` — a failure → one located problem.

Hygiene (as torchinfo): ``no_grad``, eval mode for the pass, hooks removed and modes
restored in ``finally`` (modules created during the pass take their parent's mode),
and a check that no parameter stayed uninitialized.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from shapecli.assemble import assemble
from shapecli.construct import BuiltModel, layer_warning
from shapecli.diagnose import Explainer, failing_entry, in_tree, is_internal, open_calls
from shapecli.errors import Problem, foreign_message
from shapecli.inputs import InputSpec, input_names
from shapecli.layers.auto import AutoBuildError, AutoSized
from shapecli.memory import NotDerived, Step, buffer_bytes, training_step
from shapecli.record import HookFailure, Recorder
from shapecli.replay import Replayer, repeat_copies
from shapecli.report import Memory, Report, Totals
from shapecli.spec.model import at_or_above
from shapecli.speedups import lean_meta, recurrent_flops


@dataclass(frozen=True)
class Measure:
    """What a dry run measures besides shapes and counts.

    ``flops``: torch's ``FlopCounterMode`` counts every op of the pass (2 × multiply-adds,
    attention included), per call and in total. ``training``: one more pass, in train
    mode with gradients on fake CPU tensors, estimates what a CPU training step holds
    (see :mod:`shapecli.memory`), with the ``optimizer``'s state.
    """

    flops: bool = False
    training: bool = False
    optimizer: str = "adam"


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
    measure: Measure = Measure(),
) -> Report:
    """Run the model once on meta tensors and report what every layer did.

    With ``replay``, copies made by ``repeat:`` that receive what their first copy did
    replicate it instead of running (:mod:`shapecli.replay`); with ``shortcuts``, the
    pass runs in :func:`~shapecli.speedups.lean_meta` (no dynamo or sympy import,
    recurrent layers by shape rule). Either way the report is the same. An exception
    raised by shapecli's own code propagates (it is a bug, exit 3). ``measure`` adds
    FLOPs and the training-memory estimate.
    """
    model = built.model
    recorder = Recorder(model, set(built.entries))
    tracing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    tensors = make_inputs(inputs)
    if built.traced:
        from shapecli.trace import Dataflow

        recorder.dataflow = tracing = dataflow = Dataflow()
        dataflow.enter_inputs(tensors, input_names(tuple(inputs)))
    counting = _flop_counter(recorder) if measure.flops else contextlib.nullcontext()
    modes = {path: m.training for path, m in model.named_modules()}
    copies = repeat_copies(model, built.entries) if replay else []
    replayer = Replayer(model, copies, recorder.first_call, recorder.replayed)
    error: BaseException | None = None
    try:
        recorder.install()
        replayer.install()
        model.eval()
        lean = lean_meta() if shortcuts else contextlib.nullcontext()
        with torch.no_grad(), warnings.catch_warnings(), lean, counting, tracing:
            warnings.simplefilter("always")
            warnings.showwarning = recorder.warn
            model(*tensors)
    except Exception as e:  # a layer that cannot take its input raises anything
        error = e
    finally:
        replayer.remove()
        recorder.remove()
        restore_modes(model, modes)
    if error is not None and is_internal(error):
        raise (
            error.__cause__
            if isinstance(error, HookFailure | AutoBuildError) and error.__cause__
            else error
        )
    explainer = Explainer(
        built, recorder, name, tuple(inputs), {id(t): i for i, t in enumerate(tensors)}
    )
    calls = open_calls(error, recorder) if error is not None else []
    errors: list[Problem] = [explainer.mismatch(error, calls)] if error is not None else []
    errors.extend(built.apply_ties())
    failed = {id(c) for c in in_tree(calls)}
    rows, totals = assemble(built, recorder, name, failed, input_names(tuple(inputs)))
    warned = list(_warnings(built, recorder))
    if error is None:
        errors.extend(uninitialized(built))
    training = None
    if measure.training and not errors:
        training = _training(built, make_inputs(inputs), shortcuts, warned)
    totals = replace(totals, memory=_memory(built, totals, measure, training))
    return Report(
        name=name,
        spec=spec_file,
        inputs=tuple(inputs),
        rows=tuple(rows),
        totals=totals,
        errors=tuple(errors),
        warnings=tuple(warned),
    )


def _flop_counter(recorder: Recorder) -> contextlib.AbstractContextManager[object]:
    """A FLOP counter for the pass, whose running total the recorder reads per call
    (with what the recurrent shape rule answered without running)."""
    from torch.utils.flop_counter import FlopCounterMode  # before the lean block

    counter = FlopCounterMode(display=False)
    before = recurrent_flops()
    recorder.flop_total = lambda: counter.get_total_flops() + recurrent_flops() - before
    return counter


def _training(
    built: BuiltModel, tensors: list[torch.Tensor], shortcuts: bool, warned: list[Problem]
) -> Step | None:
    """What one CPU training step holds (see :mod:`shapecli.memory`); None, with a
    warning at the entry to blame, when the model cannot run in train mode as declared
    (BatchNorm over one value per channel) or the estimate does not model it."""
    # Recurrent layers take torch's own path, not the shape rule: on the fake CPU
    # tensors of the training pass, that reaches the kernel the CPU would run.
    lean = lean_meta(recurrent=False) if shortcuts else contextlib.nullcontext()
    try:
        with lean, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return training_step(built.model, tensors)
    except Exception as e:  # what a train-mode forward raises is the model's, not ours
        warned.append(_training_failed(built, e))
        return None


def _training_failed(built: BuiltModel, error: Exception) -> Problem:
    """The warning for a model whose training step is not estimated, at the entry that
    failed (a BatchNorm over one value per channel) or is not modelled, so the user knows
    which line to look at."""
    path = failing_entry(error, built)
    entry = built.entries.get(path) if path is not None else None
    who = f"layer {path} ({entry.display_type})" if entry is not None else "the model"
    if isinstance(error, NotDerived):
        message = f"the training estimate is not derived for {who}: {error}"
        hint = "the other figures stand; train it once on the CPU to measure this one"
    else:
        message = (
            f"the training estimate is missing: in train mode {who} failed: "
            f"{foreign_message(error)}"
        )
        hint = "a layer that needs several values per channel (BatchNorm) may need a larger batch"
    return Problem(
        "training-estimate",
        message,
        source=entry.source if entry is not None else None,
        severity="warning",
        path=path if entry is not None else None,
        layer_type=entry.type if entry is not None else None,
        hint=hint,
    )


def _memory(built: BuiltModel, totals: Totals, measure: Measure, step: Step | None) -> Memory:
    model = built.model
    memory = Memory(
        params=totals.param_bytes,
        buffers=buffer_bytes(model) if _sized(model) else 0,
        forward_activations=totals.activation_bytes or 0,
    )
    if not measure.training or step is None:
        return memory
    return replace(
        memory,
        gradients=step.gradient_bytes,
        optimizer=measure.optimizer,
        optimizer_state=step.optimizer_bytes(measure.optimizer),
        saved_for_backward=step.saved,
    )


def _sized(model: nn.Module) -> bool:
    """Every buffer has a size (a lazy layer that never ran has none yet)."""
    from torch.nn.parameter import UninitializedBuffer

    return not any(isinstance(b, UninitializedBuffer) for b in model.buffers())


def restore_modes(model: nn.Module, modes: dict[str, bool]) -> None:
    """Each module back in its mode from before the pass; a module created during the
    pass (inside an ``auto`` layer) takes its parent's."""
    current = {"": modes.get("", True)}
    for path, module in model.named_modules():
        parent = path.rpartition(".")[0]
        module.training = modes.get(path, current.get(parent, True))
        current[path] = module.training


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
