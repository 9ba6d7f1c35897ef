"""One observed run of a model: what every pass shapecli makes has in common.

A pass installs hooks (the recorder, the replayer), puts the model in eval or train
mode, turns gradients on or off, enters torch modes (a FLOP counter, fake tensors,
dataflow tracing, saved-tensor hooks), runs the model once — and in ``finally``
removes every hook and restores every module's mode, whatever happened (torchinfo's
``forward_pass``). The dry run, a symbolic run, the training estimate and ``build
--verify`` are each one call of :func:`observe` with what they watch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


class Hooks(Protocol):
    """Something that watches a pass from inside the model (module hooks, a replaced
    ``forward``): installed before the run, removed after it."""

    def install(self) -> None: ...

    def remove(self) -> None: ...


@dataclass
class Run:
    """What the model returned, or what it raised (a layer may raise anything)."""

    output: object = None
    error: Exception | None = None


def observe(
    model: nn.Module,
    inputs: Sequence[object],
    *,
    hooks: Sequence[Hooks] = (),
    modes: Sequence[contextlib.AbstractContextManager[Any]] = (),
    train: bool = False,
    warn: Callable[..., None] | None = None,
) -> Run:
    """Run ``model`` once on ``inputs`` inside ``modes``, watched by ``hooks``: in train
    mode with gradients (``train``), else in eval mode without. Each warning goes to
    ``warn`` (as ``warnings.showwarning`` takes it), every time it is raised; without
    ``warn``, warnings are ignored. Modules created during the run take their parent's
    mode afterwards."""
    from shapecli.speedups import run_self_checks

    run_self_checks()  # before the hooks: a probe's own modules are not the model's
    before = {path: m.training for path, m in model.named_modules()}
    run = Run()
    installed: list[Hooks] = []
    try:
        for hook in hooks:
            hook.install()
            installed.append(hook)
        model.train(train)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(train))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("always" if warn else "ignore")
            if warn is not None:
                warnings.showwarning = warn
            for mode in modes:
                stack.enter_context(mode)
            run.output = model(*inputs)
    except Exception as e:  # a layer that cannot take its input raises anything
        run.error = e
    finally:
        for hook in reversed(installed):
            hook.remove()
        restore_modes(model, before)
    return run


def restore_modes(model: nn.Module, modes: dict[str, bool]) -> None:
    """Each module back in its mode from before the pass; a module created during the
    pass (inside an ``auto`` layer) takes its parent's."""
    current = {"": modes.get("", True)}
    for path, module in model.named_modules():
        parent = path.rpartition(".")[0]
        module.training = modes.get(path, current.get(parent, True))
        current[path] = module.training
