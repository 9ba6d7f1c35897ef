"""Forward hooks that keep one record per module call: what went in, what came out.

A module may be called more than once — a ``Ref`` calls its target again, a shared
block runs twice — so the unit of record is the *call*, not the module. Each
:class:`Call` knows the call it happened inside, so when a layer raises, the chain of
open calls says which use of which entry failed, with that use's shapes.

Shapes and dtypes are read inside the hooks, at the moment of the call: a layer that
changes a tensor in place (``x.unsqueeze_(0)``) cannot rewrite what an earlier layer
was seen to receive or return. The tensor objects themselves are kept too, for their
identity only: which call returned the tensor that a failing layer received.

Global hooks see every module, including those created *during* the pass (the real
layer behind an ``auto`` placeholder builds its submodules then); their path is found
under the module that is running when they are first called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.utils.hooks import RemovableHandle

from shapecli.report import Origin, Shape


class Tracer(Protocol):
    """What the recorder asks of a dataflow tracer (:class:`shapecli.trace.Dataflow`):
    where tensors were made, and that a module's outputs are now its own."""

    def places(self, tensors: Iterable[torch.Tensor]) -> tuple[Origin, ...]: ...

    def set(self, tensor: torch.Tensor, places: tuple[Origin, ...]) -> None: ...


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as it was when a hook saw it."""

    shape: Shape
    dtype: str
    itemsize: int = 4

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor (0 while a size is symbolic)."""
        n = self.itemsize
        for d in self.shape:
            n *= d if isinstance(d, int) else 0
        return n


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


#: How a size is written down: an int, or (for symbolic sizes) a formula.
SizeOf = Callable[[object], int | str]


def plain_size(size: object) -> int | str:
    return size if isinstance(size, int) else int(size)  # type: ignore[call-overload]


def info(tensor: torch.Tensor, size: SizeOf = plain_size) -> TensorInfo:
    shape = tuple(size(d) for d in tensor.shape)
    return TensorInfo(shape, dtype_name(tensor.dtype), tensor.element_size())


def layout(values: tuple[object, ...], infos: tuple[TensorInfo, ...]) -> list[str]:
    """Each argument as it was passed, with the recorded shapes: a tensor is ``2×8``, a
    tuple of them ``(2×5×4, (1×5×4, 1×5×4))``."""
    from shapecli.report import format_shape

    shapes = iter(i.shape for i in infos)

    def one(value: object) -> str:
        if isinstance(value, torch.Tensor):
            return format_shape(next(shapes, ()))
        if isinstance(value, list | tuple):
            return "(" + ", ".join(one(v) for v in value) + ")"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {one(v)}" for k, v in value.items()) + "}"
        return type(value).__name__

    return [one(v) for v in values]


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) tuple/list/dict, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


@dataclass(eq=False)
class Call:
    """One call of one module."""

    path: str
    index: int  # 0 for the module's first call, 1 for its second, …
    parent: Call | None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...] | None = None  # None until (unless) it returns
    #: The live objects, for identity (producers) and replay; never shown.
    tensors: tuple[torch.Tensor, ...] = ()
    returned: object = None
    keywords_seen: bool = False
    arguments: tuple[object, ...] = ()  # the positional arguments, for their structure
    flops: int | None = None  # counted during the call (submodules' included), when counted
    flops_at_start: int = 0
    #: Where its inputs were made, and what it returned was made from (when the pass
    #: traces dataflow: :mod:`shapecli.trace`).
    places: tuple[Origin, ...] = ()
    returned_places: tuple[Origin, ...] = ()

    @property
    def done(self) -> bool:
        return self.outputs is not None


class HookFailure(Exception):
    """shapecli's own hook code raised: a bug in shapecli, never the user's mismatch."""


@dataclass
class Recorder:
    """Records every call of every module of ``model`` (see the module docstring)."""

    model: nn.Module
    entry_paths: set[str]
    calls: list[Call] = field(default_factory=list)
    first: dict[str, Call] = field(default_factory=dict)
    stack: list[Call] = field(default_factory=list)
    #: id of a tensor → the innermost entry call that returned it.
    producers: dict[int, Call] = field(default_factory=dict)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    #: The FLOPs counted so far in this pass (a FLOP counter's running total), or None
    #: when FLOPs are not counted.
    flop_total: Callable[[], int] | None = None
    #: How sizes are written down (formulas in a symbolic run; never a guard on them).
    size: SizeOf = plain_size
    #: Traces where tensors come from (a Python model's dataflow), or None.
    dataflow: Tracer | None = None

    def __post_init__(self) -> None:
        self.modules: dict[str, nn.Module] = dict(self.model.named_modules())
        self.paths: dict[int, str] = {id(m): p for p, m in self.modules.items()}
        self.known: set[int] = set(self.paths)
        self.handles: list[RemovableHandle] = []
        self.end_handle: RemovableHandle | None = None
        self._alive: list[object] = []  # keeps ids of recorded tensors unique
        self._count: Counter[str] = Counter()
        self.replayed_flops = 0  # what replayed copies would have counted

    # -- installing ----------------------------------------------------------------------

    def install(self) -> None:
        """Register the hooks. A torch that refuses them fails shapecli, not the model:
        the error is a :class:`HookFailure` (an internal error), never a mismatch."""
        try:
            self._register()
        except Exception as e:
            self.remove()
            raise HookFailure(f"{type(e).__name__}: {e}") from e

    def _register(self) -> None:
        # The global pre-hook runs before any module's own (a Lazy* layer sizes itself in
        # its own pre-hook, and may fail there): it opens the call. Global pre-hooks
        # never see keyword arguments, so each module known now also gets a pre-hook that
        # adds them; the global forward hook sees them for modules created later.
        self.handles.append(register_module_forward_pre_hook(self._begin))
        for module in self.modules.values():
            self.handles.append(module.register_forward_pre_hook(self._keywords, with_kwargs=True))
        self.end_handle = register_module_forward_hook(self._end, with_kwargs=True)
        self.handles.append(self.end_handle)

    def remove(self) -> None:
        """Remove every hook, leaving nothing of them in torch (a flag left behind would
        make a later ``torch.compile`` in the same process warn of global hooks)."""
        from shapecli.torch_compat import global_hooks

        for handle in self.handles:
            if handle is self.end_handle:
                global_hooks.remove(handle)
            else:
                handle.remove()
        self.handles.clear()

    # -- hooks ---------------------------------------------------------------------------

    def _begin(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        _guarded(self.begin, module, args)
        check_input_dtype(module, args)

    def _keywords(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        _guarded(self.keywords, module, kwargs)

    def _end(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: object
    ) -> None:
        _guarded(self.keywords, module, kwargs)
        _guarded(self.end, module, output)

    def warn(self, message: Warning | str, *args: object, **kwargs: object) -> None:
        """``warnings.showwarning`` for the pass: remember which module was running."""
        self.warnings.append((self.stack[-1].path if self.stack else "", str(message)))

    # -- what the hooks do ---------------------------------------------------------------

    def begin(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        path = self.path_of(module)
        tensors = tuple(tensors_in(args))
        call = Call(
            path,
            self._count[path],
            self.stack[-1] if self.stack else None,
            tuple(info(t, self.size) for t in tensors),
            tensors=tensors,
            arguments=args,
            flops_at_start=self.flops_now(),
            places=self.dataflow.places(tensors) if self.dataflow else (),
        )
        self._count[path] += 1
        self.calls.append(call)
        self.first.setdefault(path, call)
        self.stack.append(call)

    def keywords(self, module: nn.Module, kwargs: dict[str, Any]) -> None:
        """Add the tensors passed by keyword to the open call of ``module`` (once)."""
        call = self.stack[-1] if self.stack else None
        if call is None or call.keywords_seen or call.path != self.path_of(module):
            return
        call.keywords_seen = True
        tensors = tuple(tensors_in(kwargs))
        if tensors:
            call.inputs += tuple(info(t, self.size) for t in tensors)
            call.tensors += tensors
            if self.dataflow:
                call.places = (*call.places, *self.dataflow.places(tensors))

    def end(self, module: nn.Module, output: object) -> None:
        path = self.path_of(module)
        # A call whose exception something caught inside torch never returned: drop it.
        while self.stack and self.stack[-1].path != path:
            self.stack.pop()
        if not self.stack:
            return
        call = self.stack.pop()
        outputs = tuple(tensors_in(output))
        call.outputs = tuple(info(t, self.size) for t in outputs)
        call.returned = output
        self._alive.append(output)
        if path in self.entry_paths:  # the innermost entry that returned a tensor made it
            for tensor in outputs:
                self.producers.setdefault(id(tensor), call)
        if self.dataflow:  # what a module returns comes from it (see shapecli.trace)
            call.returned_places = self.dataflow.places(outputs)
            for tensor in outputs:
                self.dataflow.set(tensor, (Origin(path=path, call=call.index),))
        if self.flop_total is not None:
            call.flops = self.flops_now() - call.flops_at_start

    def flops_now(self) -> int:
        """The running FLOP total, replayed copies included (0 when not counting)."""
        if self.flop_total is None:
            return 0
        return self.flop_total() + self.replayed_flops

    def path_of(self, module: nn.Module) -> str:
        path = self.paths.get(id(module))
        if path is None:
            parent = self.stack[-1].path if self.stack else ""
            found = (
                f"{parent}.{name}" if parent else name
                for name, child in self.modules[parent].named_modules()
                if child is module and name
            )
            path = next(found, f"{parent}.<{type(module).__name__}>")
            self.paths[id(module)] = path
            self.modules[path] = module
        return path

    # -- replay --------------------------------------------------------------------------

    def first_call(self, path: str) -> tuple[tuple[TensorInfo, ...], object] | None:
        """What the module at ``path`` first received (as recorded) and returned."""
        call = self.first.get(path)
        return (call.inputs, call.returned) if call is not None and call.done else None

    def replayed(self, copy_path: str, first_path: str, first: nn.Module) -> None:
        """The copy at ``copy_path`` replicates ``first``: its submodules made the calls
        the first copy's submodules made."""
        for rel, _ in first.named_modules():
            call = self.first.get(f"{first_path}.{rel}" if rel else first_path)
            if rel and call is not None:
                self.first.setdefault(f"{copy_path}.{rel}", call)
        template = self.first.get(first_path)
        if template is not None and template.flops:
            self.replayed_flops += template.flops  # the work the copy did not do again


#: Layers whose CPU and CUDA kernels need a floating input of their weight's dtype
#: (matrix products and convolutions; norms accept a half-precision input with float32
#: weights). Their meta kernels do not check it, so the dry run does.
SAME_DTYPE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.RNNBase,
    nn.MultiheadAttention,
)


def check_input_dtype(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Refuse, as torch would on a real device, a floating input whose dtype is not the
    weight's: ``Linear`` in float32 given bfloat16 runs on meta and fails for real."""
    if not isinstance(module, SAME_DTYPE):
        return
    weight = next((p for p in module.parameters(recurse=False) if p.is_floating_point()), None)
    tensor = next(iter(tensors_in(args)), None)
    if weight is None or tensor is None or not tensor.is_floating_point():
        return
    if tensor.dtype != weight.dtype:
        from shapecli.layers.own import LayerInputError

        got, needs = (str(d).removeprefix("torch.") for d in (tensor.dtype, weight.dtype))
        raise LayerInputError(
            f"its input is {got} and its weights {needs}: torch refuses the mix on a real device",
            f"{needs} input (its weights' dtype)",
            hint=f"give the input as {needs} (`--input …:{needs}`), or build the model in "
            f"{got} (`--dtype {got}`)",
            tensor=tensor,
        )


def _guarded(hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception as e:
        raise HookFailure(f"{type(e).__name__}: {e}") from e
