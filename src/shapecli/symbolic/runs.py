"""Concrete dry runs at given sizes: the ground truth every symbolic claim is checked
against, each run at most once, all of them within a budget.

A run at new sizes goes through the model the first run sized (its lazy layers are
sized, its ``repeat:`` copies replay): that is the model at every size where it works,
since a layer whose size would follow the input is an error of its own
(``size-dependent``). Only where that fails is the spec built afresh for the sizes, as
a concrete ``shapecli inspect`` would: if the fresh model works, some inferred layer
took other sizes there, and the outcome says which.

A checking run records only shapes, and needs of each layer only whether it takes its
input and what shape it gives. In eval mode a ``BatchNorm`` with running statistics
takes any input its own ``_check_input_dim`` takes whose channels are its
``num_features``, and gives that input's shape — on the meta device it still computes
its decomposition step by step (two thirds of a ResNet-18 run). Those calls, and only
those (see :func:`_batch_norm_by_shape`), give an empty tensor of the input's shape.
So do a ``LayerNorm`` whose input ends in its ``normalized_shape``, at its weights'
dtype (:func:`_layer_norm_by_shape`), and a ``Linear`` given ``in_features`` at its
weights' dtype, with ``out_features`` in their place (:func:`_linear_by_shape`): a
third of a Swin-T run was their decompositions.

The :class:`Budget` bounds everything after the first run: runs, the symbolic trace,
the search for accepted sizes. Whatever it does not leave time for is reported as not
derived, never guessed.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import torch
from torch import nn

from shapecli.construct import BuiltModel, build_modules
from shapecli.diagnose import is_internal, modules_on_traceback
from shapecli.dryrun import dry_run, make_inputs
from shapecli.inputs import InputSpec
from shapecli.layers import own
from shapecli.observe import observe
from shapecli.record import Recorder
from shapecli.replay import Replayer, repeat_copies
from shapecli.report import Report, Shape
from shapecli.spec.model import Spec
from shapecli.speedups import lean_meta
from shapecli.symbolic.lean import attention, by_rule
from shapecli.symbolic.samples import Sizes, concrete, fits

#: Seconds the symbolic search may take after the first run, unless told otherwise:
#: with torch's import and the first run, ``lint`` of any spec stays under 30 s.
DEFAULT_BUDGET = 20.0


class BudgetExhausted(Exception):
    """The budget ran out: what is not settled yet is not derived."""


@dataclass
class Budget:
    """Seconds to spend from now on (see the module docstring)."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def check(self) -> None:
        if self.left() <= 0:
            raise BudgetExhausted

    @contextlib.contextmanager
    def interrupting(self, share: float = 1.0) -> Iterator[None]:
        """Within the block, :class:`BudgetExhausted` is raised once ``share`` of what is
        left has passed, even inside one long torch operation (a timer signal, in the
        main thread only; elsewhere the block is checked between modules only).

        The timer fires again every :data:`_AGAIN` seconds until the block ends: a raise
        that lands where Python drops exceptions (a garbage-collector callback, a
        ``__del__``) is followed by another, so the budget holds."""
        seconds = self.left() * share
        if seconds <= 0:
            raise BudgetExhausted
        if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"
        ):
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            raise BudgetExhausted

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds, _AGAIN)
        try:
            yield
        finally:
            while True:  # a firing may land here too: disarm until it is done
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
                    break
                except BudgetExhausted:
                    continue


#: Seconds between the budget timer's firings once it has run out.
_AGAIN = 0.1


#: What a run saw of each module: the input and output shapes of its first call.
Seen = Mapping[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]


@dataclass(frozen=True)
class Outcome:
    """One run: whether the model took the sizes, what each module saw, and (for a
    fresh build that worked where the sized model did not) the inferred layers whose
    sizes differ from the first run's."""

    ok: bool
    seen: Seen = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    #: Not run: an input would have more elements than any run makes (neither works nor fails).
    skipped: bool = False


class Runner:
    """Runs the spec at sizes, each sizes once (see the module docstring)."""

    def __init__(
        self,
        spec: Spec,
        inputs: tuple[InputSpec, ...],
        allow_import: tuple[str, ...],
        budget: Budget,
    ) -> None:
        self.spec = spec
        self.inputs = inputs
        self.allow_import = allow_import
        self.budget = budget
        self.built: BuiltModel | None = None
        self.report: Report | None = None
        self.cache: dict[tuple[tuple[str, int], ...], Outcome] = {}
        self.count = 0  # runs made, the first included

    def first(self, values: Sizes) -> Report:
        """The full dry run at ``values`` (a fresh build): its report; its model is the
        one later runs use, once it worked."""
        built = self._build()
        report = dry_run(built, concrete(self.inputs, values), self.spec.name, self.spec.file)
        self.count += 1
        if report.ok:
            self.built, self.report = built, report
            if not _blind(report):  # else the proof's own run there sees every size
                self.cache[_key(values)] = Outcome(True, _seen_in(report))
        return report

    def __call__(self, values: Sizes) -> Outcome:
        """The outcome at ``values`` (raises :class:`BudgetExhausted` when out of time)."""
        key = _key(values)
        if key not in self.cache:
            self.budget.check()
            if min(values.values(), default=1) < 1:
                self.cache[key] = Outcome(False)  # no concrete --input can say this
            elif not fits(self.inputs, values):
                self.cache[key] = Outcome(False, skipped=True)
            else:
                self.cache[key] = self._sized(values)
        return self.cache[key]

    def fresh(self, values: Sizes) -> Outcome:
        """The outcome at ``values`` of the spec built afresh for them."""
        assert self.built is not None and self.report is not None, "the first run worked"
        built = self._build()
        report = dry_run(built, concrete(self.inputs, values), self.spec.name, self.spec.file)
        self.count += 1
        if not report.ok:
            return Outcome(False)
        mine = _inferred(self.report)
        changed = tuple(
            path for path, params in _inferred(report).items() if mine.get(path) != params
        )
        return Outcome(True, _seen_in(report), changed)

    def _build(self) -> BuiltModel:
        with lean_meta():  # building runs meta ops too (weight initialization)
            return build_modules(self.spec, self.allow_import)

    def _sized(self, values: Sizes) -> Outcome:
        """The outcome at ``values`` through the sized model; where that fails inside a
        layer whose size was inferred, the outcome of a fresh build (it may infer
        another size there). A failure elsewhere is the same in a fresh build: every
        inferred layer before it took its input as it is, so would infer what it did."""
        assert self.built is not None
        model = self.built.model
        recorder = Recorder(model, set(self.built.entries))
        copies = repeat_copies(model, self.built.entries)
        replayer = Replayer(model, copies, recorder.first_call, recorder.replayed)
        tensors = make_inputs(concrete(self.inputs, values))
        self.count += 1
        hooks = (recorder, replayer, _ByShape(model))
        error = observe(model, tensors, hooks=hooks, modes=(lean_meta(),)).error
        if error is not None:  # a layer that cannot take its input raises anything
            if is_internal(error):
                raise error
            if self._in_inferred(error):
                return self.fresh(values)
            return Outcome(False)
        seen = {
            path: (tuple(i.shape for i in call.inputs), tuple(o.shape for o in call.outputs or ()))
            for path, call in recorder.first.items()
        }
        return Outcome(True, seen)

    def _in_inferred(self, error: BaseException) -> bool:
        """Whether ``error`` came through a layer whose size the first run inferred."""
        assert self.built is not None
        lazy = {id(self.built.model.get_submodule(path)) for path in self.built.lazy}
        return any(id(m) in lazy for m in modules_on_traceback(error))


class _ByShape:
    """The model's layers of :data:`_BY_SHAPE`'s types by their shortcut while installed
    (a layer whose ``forward`` someone else replaced is left alone)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.patched: list[nn.Module] = []

    def install(self) -> None:
        for module in self.model.modules():
            shortcut = _BY_SHAPE.get(type(module))
            if shortcut is not None and "forward" not in vars(module):
                module.forward = shortcut(module, module.forward)
                self.patched.append(module)

    def remove(self) -> None:
        for module in self.patched:
            vars(module).pop("forward", None)
        self.patched.clear()


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _batch_norm_by_shape(module: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, except where the layer is in eval mode with running statistics and
    the input is one tensor its own ``_check_input_dim`` takes, with ``num_features``
    channels and the dtype of every parameter and statistic of shape
    (``num_features``,): there ``F.batch_norm`` checks nothing more and gives the
    input's shape, which is all a checking run records."""

    def by_shape(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if not isinstance(x, torch.Tensor) or module.training or x.dim() < 2:
            return forward(*args, **kwargs)
        channels = module.num_features
        stats = (module.running_mean, module.running_var)
        tensors = (*stats, module.weight, module.bias)
        if (
            any(t is None for t in stats)
            or x.shape[1] != channels
            or any(
                t is not None and (t.shape != (channels,) or t.dtype != x.dtype) for t in tensors
            )
        ):
            return forward(*args, **kwargs)
        module._check_input_dim(x)  # the rank the layer takes: its own error otherwise
        return torch.empty_like(x)

    return by_shape


def _layer_norm_by_shape(module: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, except where the input is one floating tensor that ends in the
    layer's ``normalized_shape``, and every parameter has the input's dtype: there
    ``F.layer_norm`` gives the input's shape."""

    def by_shape(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if not _floating(x, module):
            return forward(*args, **kwargs)
        normalized = tuple(module.normalized_shape)
        if x.dim() < len(normalized) or tuple(x.shape[x.dim() - len(normalized) :]) != normalized:
            return forward(*args, **kwargs)
        return torch.empty_like(x)

    return by_shape


def _linear_by_shape(module: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, except where the input is one floating tensor of at least one
    dimension whose last size is ``in_features``, and every parameter has the input's
    dtype: there ``F.linear`` gives that shape with ``out_features`` last."""

    def by_shape(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if not _floating(x, module) or x.dim() < 1 or x.shape[-1] != module.in_features:
            return forward(*args, **kwargs)
        return x.new_empty((*x.shape[:-1], module.out_features))

    return by_shape


def _activation_by_shape(module: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, except where the input is one floating tensor: an activation (or
    dropout) of :data:`_ACTIVATIONS` gives its shape, whatever its rank."""

    def by_shape(*args: Any, **kwargs: Any) -> Any:
        x = args[0] if len(args) == 1 and not kwargs else None
        if not _floating(x, module):
            return forward(*args, **kwargs)
        return torch.empty_like(x)

    return by_shape


def _attention_by_shape(module: Any, forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward``, except where :func:`_attention_checked` answers."""
    return by_rule(module, forward, _attention_checked)


def _attention_checked(
    module: Any, x: Any, context: Any = None, mask: Any = None, bias: Any = None
) -> torch.Tensor | None:
    """The symbolic run's rule for ``Attention`` (:func:`~shapecli.symbolic.lean.
    attention`: one sequence, no context, mask or rotary embedding), for a floating
    input at every weight's dtype with fewer than 2**62 scores: its projections run as
    they would, and their attention is given by shape — on the meta device
    ``scaled_dot_product_attention`` is a Python decomposition step by step (a third of
    a Swin-T checking run)."""
    if not _floating(x, module, recurse=True) or x.dim() != 3:
        return None
    if math.prod((x.shape[0], module.heads, x.shape[1], x.shape[1])) >= 2**62:
        return None  # past what a tensor's size can count: the kernel says what
    return attention(module, x, context, mask, bias)


def _floating(x: object, module: nn.Module, recurse: bool = False) -> TypeGuard[torch.Tensor]:
    """Whether ``x`` is a floating tensor on the device and of the dtype of each of the
    module's own parameters (and its submodules', with ``recurse``)."""
    return (
        isinstance(x, torch.Tensor)
        and x.is_floating_point()
        and all(
            p.dtype == x.dtype and p.device == x.device for p in module.parameters(recurse=recurse)
        )
    )


#: Layers that give their input's shape for any floating input of any rank.
_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.SELU,
    nn.CELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus, nn.Identity,
    nn.Dropout, nn.AlphaDropout,
)  # fmt: skip


#: The checking runs' shortcuts, by layer type (see the module docstring).
_BY_SHAPE: dict[type[nn.Module], Callable[[Any, Callable[..., Any]], Callable[..., Any]]] = {
    **dict.fromkeys(_BATCH_NORMS, _batch_norm_by_shape),
    nn.LayerNorm: _layer_norm_by_shape,
    nn.Linear: _linear_by_shape,
    **dict.fromkeys(_ACTIVATIONS, _activation_by_shape),
    own.Attention: _attention_by_shape,
}


def _key(values: Sizes) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(values.items()))


def _seen_in(report: Report) -> dict[str, tuple[tuple[Shape, ...], tuple[Shape, ...]]]:
    return {
        row.path: (row.input_shapes, row.output_shapes) for row in report.rows if row.status == "ok"
    }


def _blind(report: Report) -> bool:
    """Does ``report`` hold a size not derived (inside an MoE: see
    :func:`shapecli.routing.routed_blind`)?"""
    return any(
        d is None for row in report.rows for s in (*row.input_shapes, *row.output_shapes) for d in s
    )


def _inferred(report: Report) -> dict[str, tuple[Shape | None, ...]]:
    """The parameter shapes of every layer whose input size the dry run filled in."""
    return {row.path: tuple(p.shape for p in row.params) for row in report.rows if row.inferred}


def elements(inputs: Sequence[InputSpec], values: Sizes) -> int:
    """How many elements the inputs have at ``values`` (for ordering runs by cost)."""
    return sum(
        math.prod(values[d] if isinstance(d, str) else d for d in spec.dims) for spec in inputs
    )
