"""Run each repeated block once: copies made by ``repeat:`` replay the first copy.

The copies of a ``repeat: N`` entry are built from one entry, so they are the same
function of their input. On the meta device a function of shapes: when copy *i*
receives the shapes and dtypes copy 0 received, everything copy 0 did — every
submodule's input and output shapes, every lazy size it fixed — holds for copy *i*
too. So copy *i* does not run: it becomes a deep copy of copy 0 (fresh parameters of
the same shapes, as a real forward would have made them) and returns fresh meta
tensors of copy 0's output shapes. Its submodules' calls are copied from copy 0's.

The copy keeps its own module objects wherever copy 0 has a module at the same path: a
``Ref`` elsewhere in the spec may hold one of them (``Ref: enc.1.fc``), and must go on
calling the module that is in the tree.

Replay is for inspection only: ``build`` runs every copy, so the model it hands over
is made of modules constructed the ordinary way.

For a 70B-parameter decoder that is 1 run instead of 80, and the report is the same
(``tests/test_replay.py`` checks it against a full run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shapecli.record import SizeOf, TensorInfo, info, plain_size
from shapecli.spec.model import Entry


@dataclass
class Copy:
    """Copy ``path`` of a repeat group whose first copy is at ``first``."""

    path: str
    first: str
    module: nn.Module


def repeat_copies(model: nn.Module, entries: dict[str, Entry]) -> list[Copy]:
    """Every copy after the first of every ``repeat`` group, in model order."""
    copies = []
    for path, entry in entries.items():
        if entry.repeat is not None:
            prefix = f"{path}." if path else ""
            for copy in (f"{prefix}{i}" for i in range(1, entry.repeat)):
                copies.append(Copy(copy, f"{prefix}0", model.get_submodule(copy)))
    return copies


class Replayer:
    """Installs the replaying ``forward`` on copies and undoes it afterwards.

    ``first_call(path)`` must give what copy 0 received (as recorded) and the object
    its forward returned, or ``None`` while copy 0 has not returned;
    ``on_replay(copy_path, first_path, first)`` is told after a copy became a replica,
    so the recorder can copy its submodules' calls. ``size`` writes sizes down as the
    recorder does (a formula, in a symbolic pass: never a guard on a size).
    """

    def __init__(
        self,
        model: nn.Module,
        copies: list[Copy],
        first_call: Callable[[str], tuple[tuple[TensorInfo, ...], object] | None],
        on_replay: Callable[[str, str, nn.Module], None],
        size: SizeOf = plain_size,
    ) -> None:
        self.model = model
        self.copies = copies
        self.first_call = first_call
        self.on_replay = on_replay
        self.size = size  # how the recorder wrote sizes down: compared the same way

    def install(self) -> None:
        for c in self.copies:
            c.module.forward = self._forward(c, c.module.forward)

    def remove(self) -> None:
        for c in self.copies:
            vars(c.module).pop("forward", None)

    def _forward(self, c: Copy, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            first = self.first_call(c.first)
            tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
            if (
                kwargs
                or first is None
                or len(tensors) != len(args)
                or tuple(info(t, self.size) for t in tensors) != first[0]
            ):
                return original(*args, **kwargs)  # not the same call: run it for real
            template = self.model.get_submodule(c.first)
            replicate_into(c.module, template, {})
            self.on_replay(c.path, c.first, template)
            return fresh(first[1])

        return forward


def replicate_into(target: nn.Module, template: nn.Module, memo: dict[int, nn.Parameter]) -> None:
    """Make ``target`` a replica of ``template`` in place, keeping ``target``'s own module
    objects (and their hooks) wherever ``template`` has a module of the same name."""
    kept = dict(target._modules)
    for lazy_hook in ("_initialize_hook", "_load_hook"):  # a Lazy* layer that never ran
        handle = vars(target).get(lazy_hook)
        if handle is not None:
            handle.remove()
    # its hooks, and how a layer list of its own reads the lists around it
    hooks = {
        k: v
        for k, v in vars(target).items()
        if ("hook" in k and isinstance(v, dict)) or k == "_shapecli"
    }
    replica = replicate(template, memo, shallow=True)
    modules: dict[str, nn.Module | None] = {}
    for name, module in template._modules.items():
        mine = kept.get(name)
        if module is None:
            modules[name] = None
        elif mine is not None:
            replicate_into(mine, module, memo)
            modules[name] = mine
        else:
            modules[name] = replicate(module, memo)
    state = vars(target)
    state.clear()
    state.update(vars(replica))
    state.update(hooks)
    state["_modules"] = modules
    target.__class__ = template.__class__


def replicate(module: nn.Module, memo: dict[int, nn.Parameter], shallow: bool = False) -> nn.Module:
    """A copy of ``module`` with new parameters and buffers of the same shapes.

    What ``copy.deepcopy`` would give here, at a fraction of its cost: every module's
    state is copied one level deep, tensors are replaced by new (meta) tensors, and
    hook registries start empty. ``memo`` keeps a parameter used twice inside the
    block (a tie) shared in the copy too; ``shallow`` leaves out the submodules.
    Configuration attributes (sizes, flags, a Ref's target) are immutable or meant to
    be shared, so they are not copied.
    """
    replica = module.__new__(type(module))
    state = vars(module).copy()
    for key, value in state.items():
        if "hook" in key and isinstance(value, dict):
            state[key] = type(value)()
    state["_parameters"] = {
        name: None if p is None else _new_parameter(p, memo)
        for name, p in module._parameters.items()
    }
    state["_buffers"] = {
        name: None if b is None else empty_like(b) for name, b in module._buffers.items()
    }
    state["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
    children: dict[str, nn.Module | None] = {} if shallow else module._modules
    state["_modules"] = {
        name: None if m is None else replicate(m, memo) for name, m in children.items()
    }
    vars(replica).update(state)
    return replica


def _new_parameter(param: nn.Parameter, memo: dict[int, nn.Parameter]) -> nn.Parameter:
    if id(param) not in memo:
        memo[id(param)] = nn.Parameter(empty_like(param), requires_grad=param.requires_grad)
    return memo[id(param)]


_PLAIN = (torch.Tensor, nn.Parameter)


def empty_like(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like``, for a plain row-major meta tensor made by a C++ kernel
    (~1 µs) rather than torch's Python meta reference (~20 µs): the same shape, dtype
    and strides. Any other tensor (channels-last, strided views, fake tensors) goes to
    torch."""
    if type(tensor) in _PLAIN and tensor.is_meta and tensor.stride() == _packed(tensor.shape):
        return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)
    return torch.empty_like(tensor)


def _packed(shape: torch.Size) -> tuple[int, ...]:
    """The strides of a row-major tensor of ``shape`` (what ``torch.empty`` gives)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def fresh(output: object) -> object:
    """The same structure with new meta tensors of the same shapes and dtypes."""
    if isinstance(output, torch.Tensor):
        return empty_like(output)
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a named tuple
        named: Any = type(output)
        return named(*[fresh(o) for o in output])
    if isinstance(output, tuple | list):
        return type(output)(fresh(o) for o in output)
    if isinstance(output, dict):
        return {k: fresh(v) for k, v in output.items()}
    return output
