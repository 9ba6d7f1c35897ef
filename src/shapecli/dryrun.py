"""Modules + input shapes → a :class:`~shapecli.report.Report`, by one forward pass.

The pass runs on the meta device: tensors have shapes and dtypes but no memory, so it
costs the same for a 2-layer MLP and a 70B-parameter decoder. Forward hooks record,
for every module, the shapes it received and returned on its first call; when a layer
raises, the modules still on the call stack say exactly which entry failed, and the
recorded producers say which earlier layer made the shape it could not take.

Hygiene (as torchinfo): ``no_grad``, eval mode for the pass, hooks removed and modes
restored in ``finally``, and a check that no parameter stayed uninitialized.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.nn.parameter import UninitializedParameter

from shapecli.construct import BuiltModel, join, layer_warning
from shapecli.diagnose import Diagnosis, diagnose
from shapecli.errors import Problem
from shapecli.inputs import InputSpec
from shapecli.layers import own
from shapecli.layers.auto import AutoSized
from shapecli.layers.own import LayerInputError
from shapecli.replay import Copy, Replayer, repeat_copies, signature
from shapecli.report import ParamInfo, Report, Row, RowStatus, Shape, Totals, format_shape
from shapecli.spec.model import Entry


def make_inputs(inputs: Sequence[InputSpec]) -> list[torch.Tensor]:
    """Meta tensors for concrete input declarations."""
    return [
        torch.empty(
            tuple(int(d) for d in spec.dims), dtype=getattr(torch, spec.dtype), device="meta"
        )
        for spec in inputs
    ]


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) tuple/list/dict output, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def shape_of(tensor: torch.Tensor) -> Shape:
    return tuple(int(d) for d in tensor.shape)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class _Call:
    """A module's first call: what went in and (if it returned) what came out."""

    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...] | None = None
    returned: object = None  # the forward's own return value, for replaying it


@dataclass
class _Recorder:
    """Forward hooks that record first calls, the call stack, and tensor producers.

    Modules created during the pass (the insides of an ``auto`` layer) are unknown at
    the start; their path is found under the module that is running when they are
    first called.
    """

    paths: dict[int, str]
    entry_paths: set[str]
    modules: dict[str, nn.Module] = field(default_factory=dict)
    calls: dict[str, _Call] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    producers: dict[int, str] = field(default_factory=dict)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def warn(self, message: Warning | str, *args: object, **kwargs: object) -> None:
        """``warnings.showwarning`` for the pass: remember which module was running."""
        self.warnings.append((self.stack[-1] if self.stack else "", str(message)))

    def path_of(self, module: nn.Module) -> str:
        path = self.paths.get(id(module))
        if path is None:
            parent = self.stack[-1] if self.stack else ""
            found = (
                join(parent, name)
                for name, child in self.modules[parent].named_modules()
                if child is module and name
            )
            path = next(found, f"{parent}.<{type(module).__name__}>")
            self.paths[id(module)] = path
            self.modules[path] = module
        return path

    def first_call(self, path: str) -> tuple[tuple[torch.Tensor, ...], object] | None:
        """What the module at ``path`` received and returned, once it has returned."""
        call = self.calls.get(path)
        return (call.inputs, call.returned) if call and call.outputs is not None else None

    def replayed(self, copy: Copy, first: nn.Module) -> None:
        """``copy`` now replicates ``first``: its submodules made the same calls."""
        for rel, _ in first.named_modules():
            if rel and join(copy.first, rel) in self.calls:
                self.calls[join(copy.path, rel)] = self.calls[join(copy.first, rel)]

    def before(self, module: nn.Module, args: tuple[object, ...]) -> None:
        path = self.path_of(module)
        self.stack.append(path)
        if path not in self.calls:
            self.calls[path] = _Call(tuple(tensors_in(args)))

    def after(self, module: nn.Module, args: tuple[object, ...], output: object) -> None:
        path = self.stack.pop()
        call = self.calls[path]
        if call.outputs is None:
            call.outputs = tuple(tensors_in(output))
            call.returned = output
        if path in self.entry_paths:  # innermost entry that returned a tensor made it
            for tensor in tensors_in(output):
                self.producers.setdefault(id(tensor), path)


def dry_run(
    built: BuiltModel,
    inputs: Sequence[InputSpec],
    name: str,
    spec_file: str,
    replay: bool = True,
) -> Report:
    """Run the model once on meta tensors and report what every layer did.

    With ``replay``, copies made by ``repeat:`` that receive what their first copy did
    replicate it instead of running (:mod:`shapecli.replay`); the report is the same.
    """
    model = built.model
    modules = dict(model.named_modules())
    recorder = _Recorder({id(m): p for p, m in modules.items()}, set(built.entries), modules)
    training = {path: m.training for path, m in modules.items()}
    error: BaseException | None = None
    tensors = make_inputs(inputs)
    copies = repeat_copies(model, built.entries) if replay else []
    replayer = Replayer(model, copies, recorder.first_call, recorder.replayed)
    # Global hooks (for this pass only) also see modules created during it.
    handles = [
        register_module_forward_pre_hook(recorder.before),
        register_module_forward_hook(recorder.after),
    ]
    try:
        replayer.install()
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = recorder.warn
            model(*tensors)
    except Exception as e:  # a layer that cannot take its input raises anything
        error = e
    finally:
        replayer.remove()
        for handle in handles:
            handle.remove()
        for path, module in model.named_modules():  # by path: replayed copies are new objects
            module.training = training.get(path, module.training)
    return _Reporter(built, recorder, name, spec_file, tuple(inputs), tensors).report(error)


class _Reporter:
    """Turns what the recorder saw into rows, totals and problems."""

    def __init__(
        self,
        built: BuiltModel,
        recorder: _Recorder,
        name: str,
        spec_file: str,
        inputs: tuple[InputSpec, ...],
        tensors: list[torch.Tensor],
    ) -> None:
        self.built = built
        self.recorder = recorder
        self.name = name
        self.spec_file = spec_file
        self.inputs = inputs
        self.input_ids = {id(t): i for i, t in enumerate(tensors)}

    def report(self, error: BaseException | None) -> Report:
        errors: list[Problem] = []
        if error is not None:
            errors.append(self._mismatch(error))
        errors.extend(self.built.apply_ties())
        rows, totals = self._rows()
        if error is None:
            errors.extend(self._uninitialized())
        return Report(
            name=self.name,
            spec=self.spec_file,
            inputs=self.inputs,
            rows=tuple(rows),
            totals=totals,
            errors=tuple(errors),
            warnings=self._warnings(),
        )

    def _warnings(self) -> tuple[Problem, ...]:
        """Warnings from building and running the layers, each once, at its entry."""
        found = list(self.built.warnings)
        for path, message in self.recorder.warnings:
            entry_path = self._entry_path(path)
            found.append(layer_warning(message, self.built.entries.get(entry_path), path))
        return tuple(dict.fromkeys(found))

    # -- rows and totals -----------------------------------------------------------------

    def _rows(self) -> tuple[list[Row], Totals]:
        model, entries = self.built.model, self.built.entries
        modules = list(model.named_modules())
        # Pass 1: every parameter's first place (its owner) and how often it is used.
        owner: dict[int, str] = {}
        unique: dict[int, nn.Parameter] = {}
        uses: Counter[int] = Counter()
        for path, module in modules:
            for pname, param in module._parameters.items():
                if param is None or isinstance(param, UninitializedParameter):
                    continue
                uses[id(param)] += 1
                if id(param) not in owner:
                    owner[id(param)] = join(path, pname)
                    unique[id(param)] = param
            if isinstance(module, own.Ref) and module.target is not None:
                for param in module.target.parameters():
                    uses[id(param)] += 1
        # Pass 2: rows, each listing the parameters its module owns directly.
        infos = {path: self._param_infos(path, module, owner) for path, module in modules}
        own_counts = {path: sum(p.count or 0 for p in infos[path]) for path, _ in modules}
        subtree = self._subtree_sums(own_counts)
        failed = set(self.recorder.stack)
        same_as = self._same_as()
        rows = []
        for path, module in modules:
            entry = entries.get(path)
            call = self.recorder.calls.get(path)
            status: RowStatus = "failed" if path in failed else "ok" if call else "not-run"
            type_name = type(module).__name__
            if entry is not None:
                type_name = entry.display_type
                if entry.repeat > 1:  # the group; its copies are entries with repeat 1
                    type_name = f"{entry.display_type} ×{entry.repeat}"
                elif isinstance(module, own.Ref):
                    type_name = f"Ref → {module.path}"
            rows.append(
                Row(
                    path=path,
                    name=path.rsplit(".", 1)[-1] if path else self.name,
                    type=type_name,
                    depth=path.count(".") + 1 if path else 0,
                    source=entry.source if entry else None,
                    input_shapes=tuple(shape_of(t) for t in call.inputs) if call else (),
                    output_shapes=(
                        tuple(shape_of(t) for t in call.outputs) if call and call.outputs else ()
                    ),
                    params=infos[path],
                    param_count=subtree[path],
                    entry=entry is not None,
                    inferred=path in self.built.lazy,
                    status=status,
                    same_as=same_as.get(path),
                )
            )
        trainable = sum(p.numel() for p in unique.values() if p.requires_grad)
        total = sum(p.numel() for p in unique.values())
        dtypes = Counter(dtype_name(p.dtype) for p in unique.values())
        complete = not any(
            isinstance(m, AutoSized) or isinstance(p, UninitializedParameter)
            for _, m in modules
            for p in [*m._parameters.values(), None]
        )
        totals = Totals(
            params=total,
            trainable=trainable,
            non_trainable=total - trainable,
            shared=sum(p.numel() for i, p in unique.items() if uses[i] > 1),
            param_bytes=sum(p.numel() * p.element_size() for p in unique.values()),
            activation_bytes=self._activation_bytes(),
            param_dtype=dtypes.most_common(1)[0][0] if dtypes else "float32",
            complete=complete,
        )
        return rows, totals

    def _same_as(self) -> dict[str, str]:
        """Repeat copies that received and returned exactly what the first copy did."""
        calls = self.recorder.calls
        found = {}
        for path, entry in self.built.entries.items():
            first = calls.get(join(path, "0")) if entry.repeat > 1 else None
            if first is None or first.outputs is None:
                continue
            for i in range(1, entry.repeat):
                call = calls.get(join(path, str(i)))
                if (
                    call is not None
                    and call.outputs is not None
                    and signature(call.inputs) == signature(first.inputs)
                    and signature(call.outputs) == signature(first.outputs)
                ):
                    found[join(path, str(i))] = join(path, "0")
        return found

    @staticmethod
    def _param_infos(path: str, module: nn.Module, owner: dict[int, str]) -> tuple[ParamInfo, ...]:
        """The parameters ``module`` owns directly; a Ref lists its target's, as shared."""
        infos = []
        for pname, param in module._parameters.items():
            if param is None:
                continue
            if isinstance(param, UninitializedParameter):
                infos.append(ParamInfo(pname, None, None, param.requires_grad))
                continue
            first = owner[id(param)]
            mine = first == join(path, pname)
            infos.append(
                ParamInfo(
                    pname,
                    shape_of(param),
                    param.numel() if mine else 0,
                    param.requires_grad,
                    None if mine else first,
                )
            )
        if isinstance(module, own.Ref) and module.target is not None:
            for pname, param in module.target.named_parameters():
                if not isinstance(param, UninitializedParameter):
                    infos.append(
                        ParamInfo(pname, shape_of(param), 0, param.requires_grad, owner[id(param)])
                    )
        return tuple(infos)

    @staticmethod
    def _subtree_sums(own_counts: dict[str, int]) -> dict[str, int]:
        """Each path's own count plus all its descendants', in O(modules × depth)."""
        sums = dict.fromkeys(own_counts, 0)
        for path, count in own_counts.items():
            if not count:
                continue
            sums[""] += count
            parts = path.split(".") if path else []
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in sums:
                    sums[prefix] += count
        return sums

    def _activation_bytes(self) -> int:
        """Bytes of every leaf module's outputs in one forward pass."""
        total = 0
        for path, module in self.built.model.named_modules():
            call = self.recorder.calls.get(path)
            if call and call.outputs and not any(True for _ in module.children()):
                total += sum(t.numel() * t.element_size() for t in call.outputs)
        return total

    def _uninitialized(self) -> list[Problem]:
        """One problem per layer whose lazy parameters never got a size."""
        problems = []
        for path, module in self.built.model.named_modules():
            names = [
                n for n, p in module._parameters.items() if isinstance(p, UninitializedParameter)
            ]
            if isinstance(module, AutoSized):
                names = ["its `auto` sizes"]
            if names:
                entry = self._entry_for(path)
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

    # -- the failure ---------------------------------------------------------------------

    def _entry_path(self, path: str) -> str:
        """The path of the spec entry that ``path`` is (or is inside of)."""
        while path not in self.built.entries and path:
            path = path.rpartition(".")[0]
        return path

    def _entry_for(self, path: str) -> Entry | None:
        return self.built.entries.get(self._entry_path(path))

    def _mismatch(self, error: BaseException) -> Problem:
        recorder, entries = self.recorder, self.built.entries
        stack = recorder.stack
        failing = next(
            (p for p in reversed(stack) if p in entries and p), stack[-1] if stack else ""
        )
        entry = entries.get(failing)
        culprit_path = stack[-1] if stack else failing
        culprit = self.built.model.get_submodule(culprit_path)
        call = recorder.calls.get(culprit_path)
        received = tuple(shape_of(t) for t in call.inputs) if call else ()
        dtypes = tuple(dtype_name(t.dtype) for t in call.inputs) if call else ()
        type_name = entry.type if entry and culprit_path == failing else type(culprit).__name__
        diagnosis = (
            Diagnosis(error.expected, error.hint)
            if isinstance(error, LayerInputError)
            else diagnose(culprit, type_name, received, dtypes)
        )
        display = entry.display_type if entry else type(culprit).__name__
        label = failing or self.name
        got = " and ".join(format_shape(s) for s in received) or "no tensor"
        message = f"layer {label} ({display}) cannot take its input {got}"
        if diagnosis.expected:
            message += f": it expects {diagnosis.expected}"
        notes = []
        if culprit_path != failing:
            notes.append(f"inside it, {culprit_path} ({type(culprit).__name__}) failed")
        if entry is not None and entry.via is not None:
            notes.append(f"in block `{entry.via[0]}` used at {entry.via[1]}")
        return Problem(
            code="shape-mismatch",
            message=message,
            source=entry.source if entry else None,
            path=failing,
            layer_type=entry.type if entry else type(culprit).__name__,
            input_shapes=received,
            expected=diagnosis.expected,
            produced_by=self._produced_by(call.inputs[0] if call and call.inputs else None),
            hint=diagnosis.hint,
            detail=_torch_message(error),
            notes=tuple(notes),
        )

    def _produced_by(self, tensor: torch.Tensor | None) -> str | None:
        """The earliest layer that made this shape, skipping shape-preserving layers."""
        if tensor is None:
            return None
        chain = []
        current = tensor
        while True:
            if id(current) in self.input_ids:
                origin = f"the model input {self.inputs[self.input_ids[id(current)]]}"
                break
            path = self.recorder.producers.get(id(current))
            if path is None:
                return None
            chain.append(path)
            call = self.recorder.calls[path]
            same = call.inputs and call.outputs and shape_of(call.inputs[0]) == shape_of(current)
            if not same:
                origin = self._describe(path)
                chain.pop()
                break
            current = call.inputs[0]
        if chain:
            through = ", ".join(self._describe(p) for p in reversed(chain))
            return f"{origin}, passed on unchanged by {through}"
        return origin

    def _describe(self, path: str) -> str:
        entry = self.built.entries.get(path)
        kind = entry.display_type if entry else type(self.built.model.get_submodule(path)).__name__
        return f"{path} ({kind})"


def _torch_message(error: BaseException) -> str:
    """The failing code's own message, kept verbatim below ours."""
    return f"{type(error).__name__}: {str(error).strip() or '(no message)'}"
