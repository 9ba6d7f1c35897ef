"""A Python model as the thing to inspect: ``pkg.module:factory``.

Wherever a spec is accepted, ``pkg.module:factory`` names a callable — a class or a
function — that returns an ``nn.Module``: the reference implementation a spec copies,
say, so ``shapecli diff spec.yaml torchvision.models:resnet18`` answers "is it the same
network?". The package is imported only when ``--allow-import pkg`` allows it (never
because a file said so), and the factory is called under ``torch.device("meta")``, so
a 70B-parameter model costs nothing.

Its rows are its own module tree; with no YAML behind it, problems name module paths
and the target instead of ``file:line:col``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from shapecli.errors import Source, fail, foreign_message
from shapecli.imports import check_allowed, not_found_hint

TARGET = re.compile(
    r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attribute>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
)


def is_target(text: str) -> bool:
    """Does ``text`` name a Python factory (and not a file that happens to exist)?"""
    return bool(TARGET.fullmatch(text)) and not Path(text).exists()


def load_model(target: str, allow_import: Iterable[str] = ()) -> Any:
    """The module tree ``target`` makes, on the meta device, as a
    :class:`~shapecli.construct.BuiltModel` whose entries are all its modules."""
    import torch
    from torch import nn

    from shapecli.errors import did_you_mean
    from shapecli.layers.registry import public_names

    match = TARGET.fullmatch(target)
    assert match is not None
    module_name, attribute = match.group("module"), match.group("attribute")
    where = Source(target, 0, 0)
    check_allowed(target, module_name, allow_import, where)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as e:  # user code may raise anything at import
        raise fail(
            "python-model",
            f"cannot import `{module_name}`: {foreign_message(e)}",
            where,
            hint=not_found_hint(module_name, e),
        ) from e
    reached = ""  # the attribute path so far, for a did-you-mean on a nested name
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = [reached + name for name in public_names(found, callable)]
            close = did_you_mean(reached + part, names)
            raise fail("python-model", f"`{module_name}` has no `{attribute}`{close}", where)
        found = getattr(found, part)
        reached += part + "."
    if not callable(found):
        raise fail("python-model", f"`{target}` is not a class or function", where)
    try:
        with torch.device("meta"):
            model = found()
    except Exception as e:  # a constructor may raise anything; keep its message below ours
        raise fail(
            "python-model",
            f"`{target}()` failed",
            where,
            detail=foreign_message(e),
            hint="the factory is called with no arguments, on the meta device",
        ) from e
    if not isinstance(model, nn.Module):
        raise fail(
            "python-model",
            f"`{target}()` returned a {type(model).__name__}, not an nn.Module",
            where,
        )
    return built_from(model, where)


def built_from(model: Any, where: Source) -> Any:
    """``model`` (an ``nn.Module``) as a :class:`~shapecli.construct.BuiltModel` whose
    entries are all its modules, each located at ``where``."""
    from torch.nn.modules.lazy import LazyModuleMixin

    from shapecli.construct import BuiltModel
    from shapecli.spec.model import Entry

    entries = {
        path: Entry(type(module).__name__, path.rsplit(".", 1)[-1] if path else "", where)
        for path, module in model.named_modules()
    }
    lazy = {
        path
        for path, module in model.named_modules()
        if isinstance(module, LazyModuleMixin) and cast(Any, module).has_uninitialized_params()
    }
    return BuiltModel(model, entries, lazy=lazy)  # no graph: the pass traces it


def meta_copy(model: Any, where: Source) -> Any:
    """A copy of ``model`` whose parameters and buffers are empty meta tensors of the
    same shapes, dtypes and ties: what the dry run may run (and lazy layers fill in)
    without reading, moving or changing the caller's module. Its weights are never
    copied, so a model of any size costs next to nothing."""
    import copy

    memo: dict[int, Any] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in memo:  # a tied tensor once
            memo[id(tensor)] = _on_meta(tensor)
    try:
        return copy.deepcopy(model, memo)
    except Exception as e:  # a module may hold anything, and refuse to be copied
        raise fail(
            "python-model",
            f"cannot make a meta copy of the {type(model).__name__} to dry-run",
            where,
            detail=foreign_message(e),
            hint="the model's weights are never moved or changed, so it is copied first; "
            "give a factory instead (`pkg.module:factory`)",
        ) from e


def _on_meta(tensor: Any) -> Any:
    """An empty meta tensor like ``tensor``, of its kind: a parameter (trainable or
    not), a lazy layer's placeholder (materialized on meta when the copy runs), a
    buffer."""
    import torch
    from torch import nn
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

    for lazy in (UninitializedParameter, UninitializedBuffer):
        if isinstance(tensor, lazy):  # (torch's stubs miss these constructors' arguments)
            made: Any = cast(Any, lazy)(
                requires_grad=tensor.requires_grad, device="meta", dtype=tensor.dtype
            )
            return made
    empty = torch.empty_like(tensor, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(empty, requires_grad=tensor.requires_grad)
    return empty
