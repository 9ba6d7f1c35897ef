"""Why the dry run failed: which use of which entry broke, on what, and what to write.

torch's messages describe the failing *operation* (``mat1 and mat2 shapes cannot be
multiplied (2x256 and 30x10)``); users think in *entries*. This module turns the calls
still open when a layer raised into one located :class:`~shapecli.errors.Problem`:

* **where**: the innermost entry call reached through the spec's own tree. A ``Ref``
  calls its target outside the target's place in the tree, so a failure on the second
  use of a module is blamed on the ``Ref`` entry that made that use — its line, the
  shapes of *that* call — with the target named in a note;
* **what it expected**, in the layer's own terms (``last dim 30 (in_features)``),
  rank first: a 3-D input to a layer that needs 4-D is a missing dimension, not a
  wrong channel count;
* **where the shape came from**: the earliest layer that made it, skipping layers that
  passed it on unchanged;
* **a hint**, and torch's own message verbatim below (C++ backtraces stripped).

An exception raised by shapecli's own machinery is not the user's mismatch: it is
reported as an internal error (:func:`is_internal`).
"""

from __future__ import annotations

import inspect
import math
import re
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shapecli.construct import BuiltModel
from shapecli.errors import Problem, foreign_message
from shapecli.inputs import InputSpec
from shapecli.ir import EVERY_INPUT, sources_of
from shapecli.layers.auto import AutoBuildError, built_for
from shapecli.layers.own import ArgumentError, LayerInputError
from shapecli.record import Call, HookFailure, Recorder, TensorInfo, layout, tensors_in
from shapecli.report import Origin, Shape, format_shape
from shapecli.spec.model import Entry
from shapecli.torch_compat.frames import module_called

_PACKAGE = str(Path(__file__).resolve().parent)
#: Exception types that, raised in shapecli's own code, can only be a bug in it.
_BUG_TYPES = (AssertionError, KeyError, AttributeError, NameError, UnboundLocalError)


@dataclass(frozen=True)
class Diagnosis:
    expected: str | None
    hint: str | None
    too_few_inputs: bool = False  # the hint depends on where the inputs come from
    #: The diagnosis says all there is: the third party's message below it would only
    #: mislead (``'tuple' object has no attribute 'shape'`` from inside a lazy layer).
    explained: bool = False


def is_internal(error: BaseException) -> bool:
    """Did shapecli's own code (not a layer, not torch) raise ``error``?"""
    if isinstance(error, HookFailure):
        return True
    if isinstance(error, AutoBuildError):  # a constructor that a size from `auto` broke
        return is_internal(error.error)
    if isinstance(error, LayerInputError) or not isinstance(error, _BUG_TYPES):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_PACKAGE)


def modules_on_traceback(error: BaseException) -> list[nn.Module]:
    """The modules whose calls ``error`` passed through, outermost first."""
    modules: list[nn.Module] = []
    tb: types.TracebackType | None = error.__traceback__
    while tb is not None:
        module = module_called(tb.tb_frame)
        if module is not None and (not modules or modules[-1] is not module):
            modules.append(module)
        tb = tb.tb_next
    return modules


def open_calls(error: BaseException, recorder: Recorder) -> list[Call]:
    """The calls that were still running when ``error`` was raised, outermost first.

    The recorder's stack, kept to the modules that are on the exception's own
    traceback: a call whose exception torch caught internally is not one of them.
    """
    on_traceback = {id(m) for m in modules_on_traceback(error)}
    return [c for c in recorder.stack if id(recorder.modules.get(c.path)) in on_traceback]


def failing_entry(error: BaseException, built: BuiltModel) -> str | None:
    """The path of the entry to blame for ``error``, raised by a pass that no recorder
    watched (the train-mode pass of the memory estimate): the modules on its traceback,
    by their place in the model, walked as :func:`failing_use` walks calls."""
    where = {id(m): path for path, m in built.model.named_modules()}
    paths = [where[id(m)] for m in modules_on_traceback(error) if id(m) in where]
    index = _innermost_entry(paths, built.entries)
    return paths[index] if index is not None else None


def in_tree(calls: list[Call]) -> list[Call]:
    """The open calls up to the first that does not lie inside the one before it (it
    was reached through a ``Ref``, or a module used twice by user code): the failing
    use and everything around it in the spec's own tree."""
    return calls[: _nested([c.path for c in calls])]


def _nested(paths: list[str]) -> int:
    """How many of ``paths`` (outermost first) each lie inside the one before."""
    for i in range(1, len(paths)):
        if paths[i - 1] and not paths[i].startswith(paths[i - 1] + "."):
            return i
    return len(paths)


def failing_use(calls: list[Call], entries: dict[str, Entry]) -> Call | None:
    """The innermost entry call reached through the spec's tree.

    Each open call normally lies inside the one before it (``enc.0`` inside ``enc``). A
    call that does not was reached by a ``Ref`` (or a module used twice by user code):
    the entry to blame is the last one before that jump — the use, not the original.
    """
    index = _innermost_entry([c.path for c in calls], entries)
    return calls[index] if index is not None else None


def _innermost_entry(paths: list[str], entries: dict[str, Entry]) -> int | None:
    """Where in ``paths`` (outermost first) the innermost entry is, before the first
    path that does not lie inside the one before it (a ``Ref``'s target)."""
    return max((i for i in range(_nested(paths)) if paths[i] in entries), default=None)


@dataclass
class Explainer:
    """Everything needed to explain a failed pass."""

    built: BuiltModel
    recorder: Recorder
    name: str
    inputs: tuple[InputSpec, ...]
    input_ids: dict[int, int]  # id of each model input tensor → its index in ``inputs``

    def mismatch(self, error: BaseException, calls: list[Call]) -> Problem:
        use = failing_use(calls, self.built.entries)
        culprit = calls[-1] if calls else use
        path = use.path if use else ""
        entry = self.built.entries.get(path)
        module = self.recorder.modules.get(culprit.path) if culprit else None
        received = use.inputs if use else ()
        type_name = (
            (entry.type if entry and culprit is use else type(module).__name__) if module else ""
        )
        diagnosis = self._diagnosis(error, module, type_name, culprit, path)
        label = f"layer {path or self.name} ({self._display(path)})"
        code, message, diagnosis, detail = _wording(
            error, label, self._shapes(use) or "no tensor", diagnosis
        )
        # The tensor to trace: the one our own layer named (a mask), else the first input.
        offending = getattr(error, "tensor", None)
        if offending is None and use is not None and use.tensors:
            offending = use.tensors[0]
        return Problem(
            code=code,
            message=message,
            source=entry.source if entry else None,
            path=path,
            layer_type=entry.type if entry else type_name or None,
            input_shapes=tuple(i.shape for i in received),
            expected=diagnosis.expected,
            produced_by=self.produced_by(offending),
            hint=diagnosis.hint,
            detail=detail,
            notes=self._notes(use, culprit, module, path),
        )

    def _reads_every_model_input(self, path: str) -> bool:
        """Does the entry at ``path`` read all of a version-1 model's inputs (the first
        entry does)?"""
        graph = self.built.graph
        node = graph.calls.get(path) if graph is not None else None
        return node is not None and sources_of(node) == (Origin(input=EVERY_INPUT),)

    def _diagnosis(
        self,
        error: BaseException,
        module: nn.Module | None,
        type_name: str,
        culprit: Call | None,
        path: str,
    ) -> Diagnosis:
        tupled = self._fed_a_tuple(error, culprit)
        if tupled is not None:
            return tupled
        elsewhere = _off_meta(error)
        if elsewhere is not None:
            return elsewhere
        if isinstance(error, LayerInputError):
            return Diagnosis(error.expected, error.hint)
        if module is None or culprit is None:
            return Diagnosis(None, None)
        diagnosis = diagnose(module, type_name, culprit.inputs)
        if diagnosis.too_few_inputs:
            reads_model = not path or self._reads_every_model_input(path)
            needed = (diagnosis.expected or "").partition("(")[2].rstrip(")").split(", ")
            example = f"`in: [{', '.join('_' for _ in needed)}]` ({', '.join(needed)})"
            hint = (
                "declare one model input per tensor (--input … --input …, or named inputs "
                f"in `input:`), or read them with {example}"
                if reads_model
                else f"pass every tensor it needs with `in:`, e.g. {example}"
            )
            return Diagnosis(diagnosis.expected, hint)
        if diagnosis.hint and "--input 1x… instead of …" in diagnosis.hint and self.inputs:
            given = self.inputs[0]
            concrete = f"--input 1x{given} instead of {given}"
            return Diagnosis(
                diagnosis.expected, diagnosis.hint.replace("--input 1x… instead of …", concrete)
            )
        return diagnosis

    def _fed_a_tuple(self, error: BaseException, call: Call | None) -> Diagnosis | None:
        """The diagnosis of a layer that needs a tensor and was given a tuple (what an
        LSTM or a MultiheadAttention returns), when the error says so, whatever raised
        it: torch's ``must be Tensor, not tuple``, a lazy layer's ``'tuple' object has no
        attribute``, our own ``needs a tensor``. Its size checks would be beside the
        point (``expects last dim 16`` when the tuple's first tensor ends in 16)."""
        if call is None or not call.arguments:
            return None
        given = call.arguments[0]
        if not isinstance(given, tuple | list):
            return None
        if isinstance(error, LayerInputError):
            if error.expected != "a tensor":
                return None
        elif not (
            isinstance(error, TypeError | AttributeError)
            and re.search(rf"\b{type(given).__name__}\b", str(error))
        ):
            return None
        noun = type(given).__name__
        first = next(iter(tensors_in(given)), None)
        producer = self.recorder.producers.get(id(first)) if first is not None else None
        maker = f"{self.describe(producer.path)} returns a {noun}: " if producer else ""
        hint = f"{maker}add `Take: 0` after it to keep its first element (`Take: 1` the second, …)"
        return Diagnosis(f"a tensor, not a {noun} of {len(given)}", hint, explained=True)

    @staticmethod
    def _shapes(call: Call | None) -> str:
        """What a call received, as written: ``2×8 and 2×8``, or a tuple's structure."""
        if call is None:
            return ""
        if any(isinstance(a, tuple | list) for a in call.arguments):
            return " and ".join(layout(call.arguments, call.inputs))
        return " and ".join(format_shape(i.shape) for i in call.inputs)

    def _notes(
        self, use: Call | None, culprit: Call | None, module: nn.Module | None, path: str
    ) -> tuple[str, ...]:
        notes = []
        if culprit is not None and culprit is not use:
            inner = f"{culprit.path} ({type(module).__name__})"
            how = (
                f"it uses {inner}, which failed"
                if not culprit.path.startswith(path + ".") and path
                else f"inside it, {inner} failed"
            )
            if use is None or culprit.inputs != use.inputs:
                how += f" on {self._shapes(culprit)}"
            notes.append(how)
        block = self._block_use(path)
        if block is not None:
            notes.append(f"in block `{block.block}` used at {block.source}")
        return tuple(notes)

    def _display(self, path: str) -> str:
        entry = self.built.entries.get(path)
        module = self.recorder.modules.get(path)
        if entry is None:
            return type(module).__name__
        from shapecli.layers.own import Ref

        if isinstance(module, Ref) and entry.repeat is None:
            return f"Ref → {module.path}"
        return entry.display_type

    def _block_use(self, path: str) -> Entry | None:
        """The innermost block use that ``path`` lies in (or is)."""
        parts = path.split(".") if path else []
        for i in range(len(parts), 0, -1):
            entry = self.built.entries.get(".".join(parts[:i]))
            if entry is not None and entry.block is not None and i < len(parts):
                return entry
        return None

    def produced_by(self, tensor: torch.Tensor | None) -> str | None:
        """The earliest layer that made this shape, skipping shape-preserving layers."""
        if tensor is None:
            return None
        chain: list[str] = []
        current = tensor
        while True:
            if id(current) in self.input_ids:
                index = self.input_ids[id(current)]
                given = self.inputs[index]
                named = f"`{given.name}` ({given})" if given.name else str(given)
                origin = f"the model input {named}"
                break
            call = self.recorder.producers.get(id(current))
            if call is None:
                return None
            chain.append(call.path)
            keeps = (
                call.inputs
                and call.tensors
                and call.outputs is not None
                and call.inputs[0].shape in (o.shape for o in call.outputs)
            )
            if not keeps:
                origin = self.describe(chain.pop())
                break
            current = call.tensors[0]
        if chain:
            through = ", ".join(self.describe(p) for p in reversed(chain))
            return f"{origin}, passed on unchanged by {through}"
        return origin

    def describe(self, path: str) -> str:
        return f"{path} ({self._display(path)})"


def _wording(
    error: BaseException, label: str, got: str, diagnosis: Diagnosis
) -> tuple[str, str, Diagnosis, str | None]:
    """The code, the message, the diagnosis and the third party's detail of a failure.

    Where a layer of ours said why (a :class:`LayerInputError`, or a constructor's
    ``ValueError`` when ``auto`` filled in a size it refused), its words are in the
    message — the one line ``lint`` prints — not only below it.
    """
    overflow = _overflow(error)
    if overflow:
        message = f"{label} cannot be built for its input {got}: it would need {overflow}"
        return "bad-arguments", message, Diagnosis(None, "use smaller sizes"), None
    if isinstance(error, LayerInputError) and not diagnosis.explained:
        message = f"{label} cannot take its input {got}: {error}; it expects {diagnosis.expected}"
        return "shape-mismatch", message, diagnosis, None
    if isinstance(error, AutoBuildError):
        filled = ", ".join(f"{name}: auto = {size}" for name, size in error.sizes.items())
        message = f"{label} cannot be built for its input {got} ({filled})"
        if isinstance(error.error, ArgumentError):
            return "shape-mismatch", f"{message}: {error.error}", Diagnosis(None, None), None
        return "shape-mismatch", message, Diagnosis(None, None), foreign_message(error.error)
    message = f"{label} cannot take its input {got}"
    if diagnosis.expected:
        message += f": it expects {diagnosis.expected}"
    detail = None if diagnosis.explained else foreign_message(error)
    return "shape-mismatch", message, diagnosis, detail


_DEVICE_ERROR = re.compile(
    r"same device|expected device|is on \w+, different from other tensors", re.IGNORECASE
)
_DEVICE = re.compile(r"\b(cpu|cuda(?::\d+)?|mps|xpu(?::\d+)?|hpu)\b")


def _off_meta(error: BaseException) -> Diagnosis | None:
    """The diagnosis of a tensor that is not on the meta device meeting the dry run's:
    a factory or a layer made it on a device on purpose (``device="cpu"``, ``.to()``,
    ``to_empty``, loaded weights). Its sizes are not the cause, whatever they are."""
    text = str(error)
    if not _DEVICE_ERROR.search(text):
        return None
    found = _DEVICE.search(text)
    device = found.group(1) if found else "another device"
    return Diagnosis(
        f"its tensors on the meta device, where the dry run runs, not on {device}",
        f"a tensor or weight was made on {device} on purpose (a `device=` argument, `.to()`, "
        "`to_empty()`, loaded weights): leave the device out so it follows the dry run, or "
        "make it on the input's (`device=x.device`)",
    )


def _overflow(error: BaseException) -> str | None:
    text = str(error)
    if "overflow" in text.lower() and ("size" in text.lower() or "storage" in text.lower()):
        match = re.search(r"sizes=\[([0-9, ]+)\]", text)
        if match:
            sizes = tuple(int(s) for s in match.group(1).split(","))
            return (
                f"a tensor of {format_shape(sizes)} = {math.prod(sizes):.3g} elements, "
                "more than int64 can count"
            )
        return "a tensor with more elements than int64 can count"
    return None


# -- what a layer expects ----------------------------------------------------------------


def diagnose(module: nn.Module, type_name: str, inputs: tuple[TensorInfo, ...]) -> Diagnosis:
    """The expectation of ``module`` about its inputs, and a hint: rank before sizes.
    The size it expects is the one it was built for, read through the table ``auto``
    fills sizes from (:func:`~shapecli.layers.auto.built_for`), so the two agree."""
    required = _required_inputs(module)
    if len(inputs) < len(required):
        return Diagnosis(f"{len(required)} inputs ({', '.join(required)})", None, True)
    shape: Shape = inputs[0].shape if inputs else ()
    dtype = inputs[0].dtype if inputs else ""
    lazy = _uninitialized(module)
    lazy_name = f"Lazy{type_name}" if not type_name.startswith("Lazy") else type_name
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = len(module.kernel_size)
        ranks: tuple[int, ...] = (spatial + 1, spatial + 2)
        layout = "×".join(("N", "C", *"DHW"[3 - spatial :]))
        if len(shape) not in ranks:
            return _rank(shape, ranks, layout)
        channels = shape[1] if len(shape) == spatial + 2 else shape[0]
        if not lazy and channels != module.in_channels:
            return Diagnosis(
                f"C = {module.in_channels} (in_channels) in {layout}",
                _lazy_hint(lazy_name, "in_channels", type_name),
            )
        return Diagnosis(
            f"spatial size at least the dilated kernel ({format_shape(module.kernel_size)}) "
            "after padding",
            "reduce kernel_size or stride, add padding, or feed a larger input",
        )
    if isinstance(module, nn.modules.batchnorm._NormBase):
        ranks = _norm_ranks(module)
        if ranks and len(shape) not in ranks:
            return _rank(shape, ranks, "N×C×…")
    if isinstance(module, nn.GroupNorm) and len(shape) < 2:
        return _rank(shape, (2, 5), "N×C×…")
    if isinstance(module, nn.RNNBase) and len(shape) not in (2, 3):
        return _rank(shape, (2, 3), "N×L×H (batch_first) or L×N×H")
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        if not dtype.startswith(("int", "uint")):
            return Diagnosis(
                "integer token ids (int64)",
                "declare the input as integers, e.g. --input 1x1024:long",
            )
        return Diagnosis(f"ids below {module.num_embeddings} (num_embeddings)", None)
    size = built_for(module)
    if lazy or size is None:
        return Diagnosis(None, None)
    name, rule, value = size
    hint = _lazy_hint(lazy_name, name, type_name)
    if isinstance(value, tuple):
        return Diagnosis(f"trailing dims {format_shape(value)} ({name})", hint)
    where = "last dim" if rule == "last" else "dim 1 ="
    return Diagnosis(f"{where} {value} ({name})", hint)


def _uninitialized(module: nn.Module) -> bool:
    from torch.nn.parameter import UninitializedParameter

    return any(isinstance(p, UninitializedParameter) for p in module.parameters(recurse=False))


def _norm_ranks(module: nn.Module) -> tuple[int, ...]:
    name = type(module).__name__
    instance = "Instance" in name
    for suffix, ranks, instance_ranks in (("1d", (2, 3), (2, 3)), ("2d", (4,), (3, 4))):
        if name.endswith(suffix):
            return instance_ranks if instance else ranks
    if name.endswith("3d"):
        return (4, 5) if instance else (5,)
    return ()


def _rank(shape: Shape, ranks: tuple[int, ...], layout: str) -> Diagnosis:
    wanted = " or ".join(f"{r}-D" for r in sorted(ranks, reverse=True))
    expected = f"a {wanted} input ({layout}), not {len(shape)}-D"
    if len(shape) + 1 == max(ranks):
        hint = (
            "one dimension is missing, probably the batch (N): give the model input a "
            "leading batch size, e.g. --input 1x… instead of …"
        )
    elif len(shape) < min(ranks):
        hint = "the input is flat: add the missing dimensions with `Reshape` (e.g. [C, H, W])"
    else:
        hint = "the input has extra dimensions: `Flatten` or `Reshape` them away first"
    return Diagnosis(expected, hint)


def _required_inputs(module: nn.Module) -> list[str]:
    """Names of the tensors ``module.forward`` cannot do without."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _lazy_hint(lazy: str | None, argument: str, type_name: str) -> str:
    if lazy and hasattr(nn, lazy) and lazy != type_name:
        return f"use `{lazy}` or `{argument}: auto` to take the size from the input"
    return f"use `{argument}: auto` to take the size from the input"
