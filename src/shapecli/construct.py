"""Spec → a tree of lazy ``nn.Module``\\ s on the meta device, and an index of entries.

Every module is constructed under ``torch.device("meta")``: parameters get shapes but
no memory. (Moving an unmaterialized lazy model with ``.to("meta")`` afterwards
silently breaks it, so the device is set at construction.) Lazy modules keep their
``UninitializedParameter``\\ s until the dry run's first forward pass fixes them.

Module paths are the spec's names joined with dots — exactly what
``model.get_submodule`` and ``tie:`` use — and :attr:`BuiltModel.entries` maps each
path back to the :class:`Entry` (and so the ``file:line:col``) that made it.

(The module is not called ``build``: once imported, a submodule ``shapecli.build``
would replace the public function ``shapecli.build`` on the package.)
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from shapecli.errors import Problem, ShapecliError, fail
from shapecli.layers import arguments, own
from shapecli.layers.registry import Registry
from shapecli.spec.model import ArgValue, Entry, Spec


@dataclass
class BuiltModel:
    """The module tree and what the report needs to know about how it was made."""

    model: nn.Module
    entries: dict[str, Entry] = field(default_factory=dict)
    lazy: set[str] = field(default_factory=set)
    warnings: list[Problem] = field(default_factory=list)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def layer_warning(message: str, entry: Entry | None, path: str) -> Problem:
    """A warning torch raised about a layer, located at the layer's entry."""
    label = f"layer {path} ({entry.display_type})" if entry else f"layer {path}"
    return Problem(
        code="layer-warning",
        message=f"{label}: {' '.join(message.split())}",
        source=entry.source if entry else None,
        severity="warning",
        path=path,
    )


def build_modules(spec: Spec, allow_import: Iterable[str] = ()) -> BuiltModel:
    """Construct the spec's modules on the meta device (nothing is allocated)."""
    builder = _Builder(Registry(allow_import))
    with torch.device("meta"):
        model = builder.module(spec.model, "")
    lazy = {
        path
        for path, module in model.named_modules()
        if isinstance(module, LazyModuleMixin) and cast(Any, module).has_uninitialized_params()
    }
    return BuiltModel(model, builder.entries, lazy, builder.warnings)


class _Builder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.entries: dict[str, Entry] = {}
        self.warnings: list[Problem] = []

    def module(self, entry: Entry, path: str) -> nn.Module:
        self.entries[path] = entry
        if entry.repeat > 1:
            copies = [replace(entry, repeat=1, name=str(i)) for i in range(entry.repeat)]
            return self._sequential(copies, path, entry)
        if entry.type == "Sequential" and not entry.kwargs:
            module = self._sequential(entry.args, path, entry)
        else:
            module = self._layer(entry, path)
        if not entry.trainable:
            # Attribute assignment, not requires_grad_(): lazy parameters refuse methods.
            for param in module.parameters():
                param.requires_grad = False
        return module

    def _sequential(self, entries: Iterable[ArgValue], path: str, parent: Entry) -> nn.Module:
        children: OrderedDict[str, nn.Module] = OrderedDict()
        for child in entries:
            assert isinstance(child, Entry)
            children[child.name] = self.module(child, join(path, child.name))
        try:
            return own.Sequential(children)
        except KeyError as e:  # add_module refuses names like `forward` or `training`
            raise fail(
                "spec-invalid",
                f"a layer cannot be named like this: {e.args[0]}",
                parent.source,
            ) from None

    def _layer(self, entry: Entry, path: str) -> nn.Module:
        cls = self.registry.resolve(entry.type, entry.source)
        bound = arguments.bind(cls, entry, entry.type)
        args = [self._value(v, path, str(i)) for i, v in enumerate(bound.args)]
        kwargs = {k: self._value(v, path, k) for k, v in bound.kwargs.items()}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = cls(*args, **kwargs)
            self.warnings.extend(layer_warning(str(w.message), entry, path) for w in caught)
            return module
        except ShapecliError:
            raise
        except Exception as e:  # a constructor may raise anything; keep its message below ours
            raise fail(
                "bad-arguments",
                f"{entry.display_type}: the constructor refused these arguments",
                entry.source,
                path=path,
                layer_type=entry.type,
                detail=f"{type(e).__name__}: {e}",
                hint=f"takes {arguments.usage(cls, entry.type)}",
            ) from e

    def _value(self, value: object, path: str, name: str) -> object:
        """Layer lists in arguments become modules registered under the argument's name."""
        if isinstance(value, Entry):
            return self.module(value, join(path, name))
        if isinstance(value, tuple) and value and all(isinstance(v, Entry) for v in value):
            return self._sequential(value, join(path, name), value[0])
        if (
            isinstance(value, tuple)
            and value
            and all(
                isinstance(v, tuple) and v and all(isinstance(e, Entry) for e in v) for v in value
            )
        ):  # branches: a list of layer lists
            return nn.ModuleList(
                cast(nn.Module, self._value(v, join(path, name), str(i)))
                for i, v in enumerate(value)
            )
        return value
