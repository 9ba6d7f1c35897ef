"""Type names → ``nn.Module`` classes: a closed registry with one way in.

Resolution order: shapecli's own layers, then ``torch.nn`` classes by exact name
(``Lazy*`` included), then dotted names of user code — imported only when the package
was allowed with ``--allow-import`` on the command line; a spec alone never causes an
import. Whatever a name resolves to must be an ``nn.Module`` subclass, checked on the
resolved object itself. Blocks are expanded by the spec parser and never get here.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeGuard

from torch import nn

from shapecli.errors import Source, did_you_mean, fail
from shapecli.imports import check_allowed, not_found_hint
from shapecli.layers import arguments, own
from shapecli.layers.auto import auto_rules

#: torch.nn classes a spec cannot use: containers that take modules or parameters
#: (shapecli's Sequential, Residual and Parallel take layer lists instead).
EXCLUDED = frozenset(
    {
        "Module",
        "Container",
        "ModuleList",
        "ModuleDict",
        "ParameterList",
        "ParameterDict",
        "Sequential",
    }
)


@functools.cache
def torch_layers() -> dict[str, type[nn.Module]]:
    """Every ``torch.nn`` module class a spec may name, by name."""
    named = {name: getattr(nn, name) for name in dir(nn) if name not in EXCLUDED}
    return {name: obj for name, obj in named.items() if _is_layer(obj)}


def all_layers() -> dict[str, type[nn.Module]]:
    """Own layers first, then torch.nn — the names ``shapecli layers`` lists."""
    return {
        **own.OWN_MODULES,
        **{k: v for k, v in torch_layers().items() if k not in own.OWN_MODULES},
    }


class Registry:
    """Resolves a spec's type names, allowing imports of the given packages only."""

    def __init__(self, allow_import: Iterable[str] = (), blocks: Iterable[str] = ()) -> None:
        self.allowed = tuple(allow_import)
        self.blocks = tuple(blocks)  # the spec's own names, offered as "did you mean"

    def resolve(self, name: str, source: Source | None = None) -> type[nn.Module]:
        if name in own.OWN_MODULES:
            return own.OWN_MODULES[name]
        if "." not in name:
            layers = torch_layers()
            if name in layers:
                return layers[name]
            if hasattr(nn, name):
                raise fail(
                    "unknown-layer",
                    f"`{name}` is in torch.nn but cannot be used in a spec"
                    + (": use a layer list instead" if name in EXCLUDED else ""),
                    source,
                )
            suggestion = did_you_mean(name, [*self.blocks, *all_layers()])
            raise fail(
                "unknown-layer",
                f"unknown layer type `{name}`{suggestion}",
                source,
                hint="`shapecli layers` lists every type name a spec may use",
            )
        return self._import(name, source)

    def _import(self, dotted: str, source: Source | None) -> type[nn.Module]:
        module_name, _, attribute = dotted.rpartition(".")
        check_allowed(dotted, dotted, self.allowed, source)
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # user code may raise anything at import
            raise fail(
                "unknown-layer",
                f"cannot import `{module_name}` for `{dotted}`: {type(e).__name__}: {e}",
                source,
                hint=not_found_hint(module_name, e),
            ) from e
        obj = getattr(module, attribute, None)
        if obj is None:
            close = did_you_mean(attribute, public_names(module, _is_layer))
            raise fail("unknown-layer", f"`{module_name}` has no `{attribute}`{close}", source)
        if not _is_layer(obj):
            raise fail(
                "unknown-layer",
                f"`{dotted}` is not an nn.Module subclass; a spec can only name layers",
                source,
            )
        return obj


def _is_layer(obj: object) -> TypeGuard[type[nn.Module]]:
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def public_names(namespace: object, keep: Callable[[object], bool]) -> list[str]:
    """The public names of ``namespace`` (a user's module) whose values ``keep``
    accepts (layers, factories): what a did-you-mean offers for a misspelled one."""
    names = []
    for candidate in dir(namespace):
        if candidate.startswith("_"):
            continue
        try:
            value = getattr(namespace, candidate)
        except Exception:  # a module's __getattr__ may raise anything
            continue
        if keep(value):
            names.append(candidate)
    return names


@dataclass(frozen=True)
class LayerDoc:
    """One type name a spec may use, as ``shapecli layers`` lists it."""

    name: str
    origin: str  # "shapecli" or "torch.nn"
    usage: str  # ``LazyLinear(out_features: int, bias: bool = true)``
    summary: str
    auto: tuple[str, ...]  # arguments that may be `auto`


def list_layers(pattern: str | None = None) -> list[LayerDoc]:
    """Every layer type, own layers first; ``pattern`` filters names (case-insensitive):
    a glob (``*Norm*``) or, without wildcards, a substring."""
    docs = []
    for name, cls in all_layers().items():
        if pattern and not _matches(name, pattern):
            continue
        sig = arguments.signature(cls)
        auto = tuple(n for n in auto_rules(cls) if n in sig.parameters)
        docs.append(
            LayerDoc(
                name=name,
                origin="shapecli" if name in own.OWN_MODULES else "torch.nn",
                usage=arguments.usage(cls, name, auto),
                summary=_summary(cls),
                auto=auto,
            )
        )
    return docs


def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name.lower(), pattern.lower())
    return pattern.lower() in name.lower()


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    first = doc.strip().split("\n\n")[0]
    return plain_rst(" ".join(first.split()))


#: reStructuredText in docstrings, outermost first: a link (`Huber loss <url>`_,
#: `Fast R-CNN`_), a role (:class:`~torch.nn.Linear`, :math:`y = xA^T`), a literal
#: (``dim``).
_RST_LINK = re.compile(r"`([^`<]+?)\s*(?:<[^>`]*>)?`__?")
_RST_ROLE = re.compile(r":(?:[\w-]+:)+`(~?)([^`]+)`")
_RST_LITERAL = re.compile(r"``([^`]+)``")


def plain_rst(text: str) -> str:
    """Docstring markup as the plain text a terminal (or a JSON reader) wants: each
    name or piece of code in single backticks — ```dim``` and ``:attr:`dim``` both
    become `` `dim` ``, ``:class:`~torch.nn.Linear``` becomes `` `Linear` `` — and a
    link its title."""
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_ROLE.sub(lambda m: f"`{m[2].rpartition('.')[2] if m[1] else m[2]}`", text)
    return _RST_LITERAL.sub(r"`\1`", text)
