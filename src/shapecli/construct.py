"""Spec → a tree of lazy ``nn.Module``\\ s on the meta device, and an index of entries.

Every module is constructed under ``torch.device("meta")``: parameters get shapes but
no memory. (Moving an unmaterialized lazy model with ``.to("meta")`` afterwards
silently breaks it, so the device is set at construction.) Lazy modules keep their
``UninitializedParameter``\\ s, and ``auto`` layers stay placeholders, until the dry
run's first forward pass fixes them.

Module paths are the spec's names joined with dots — exactly what
``model.get_submodule`` and ``tie:`` use — and :attr:`BuiltModel.entries` maps each
path back to the :class:`Entry` (and so the ``file:line:col``) that made it.

(The module is not called ``build``: once imported, a submodule ``shapecli.build``
would replace the public function ``shapecli.build`` on the package.)
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast, get_args

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from shapecli.errors import (
    Problem,
    ShapecliError,
    Source,
    did_you_mean,
    fail,
    foreign_message,
    raise_all,
)
from shapecli.ir import Graph, Program, compile_spec, given_count, join, program_of
from shapecli.layers import arguments, own
from shapecli.layers.auto import AutoSized, auto_rules
from shapecli.layers.catalog import OWN_LAYERS
from shapecli.layers.registry import Registry
from shapecli.report import format_shape
from shapecli.spec.model import AUTO, ArgValue, Entry, Spec


@dataclass(frozen=True)
class Tie:
    """``tie: {param: target}`` on the entry at ``path``: that parameter *is* the target."""

    path: str
    param: str
    target: str
    source: Source


@dataclass
class BuiltModel:
    """The module tree and what the report needs to know about how it was made."""

    model: nn.Module
    entries: dict[str, Entry] = field(default_factory=dict)
    lazy: set[str] = field(default_factory=set)
    warnings: list[Problem] = field(default_factory=list)
    ties: list[Tie] = field(default_factory=list)
    #: The spec's dataflow; None for a Python model, whose dataflow the pass traces.
    graph: Graph | None = None

    @property
    def traced(self) -> bool:
        return self.graph is None

    def apply_ties(self) -> list[Problem]:
        """Make every tied parameter the very object it is tied to.

        Done after the dry run (a lazy layer's own parameter has its shape by then, to
        compare with) and again after weights are allocated (``to_empty`` unties).
        A tie whose parameter is still uninitialized (its layer never ran) is skipped.
        """
        problems = []
        for tie in self.ties:
            module = self.model.get_submodule(tie.path)
            target = self.model.get_parameter(tie.target)
            mine = module._parameters.get(tie.param)
            if isinstance(module, AutoSized) or any(
                isinstance(p, UninitializedParameter) for p in (mine, target)
            ):
                continue  # the layer never ran
            if mine is None:
                code = "spec-invalid"
                message = f"`tie`: layer {tie.path} has no parameter `{tie.param}`"
            elif mine.shape != target.shape:
                code = "bad-arguments"
                message = (
                    f"cannot tie {tie.path}.{tie.param} ({format_shape(tuple(mine.shape))}) to "
                    f"{tie.target} ({format_shape(tuple(target.shape))}): the shapes differ"
                )
            else:
                module._parameters[tie.param] = target
                continue
            problems.append(Problem(code, message, tie.source, path=tie.path))
        return problems


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
    """Construct the spec's modules on the meta device (nothing is allocated).

    Every entry is built even when an earlier one fails, so all independent problems
    are raised together (:func:`~shapecli.errors.raise_all`).
    """
    graph = compile_spec(spec)
    builder = _Builder(Registry(allow_import, blocks=spec.blocks), graph)
    with torch.device("meta"):
        model = builder.module(spec.model, "")
    built = BuiltModel(model, builder.entries, warnings=builder.warnings, graph=graph)
    problems = builder.problems
    problems += _bind_refs(built)
    raise_all(problems)
    built.ties = _check_ties(built, builder.ties)
    built.lazy = {
        path
        for path, module in model.named_modules()
        if isinstance(module, AutoSized)
        or (isinstance(module, LazyModuleMixin) and cast(Any, module).has_uninitialized_params())
    }
    return built


class _Builder:
    def __init__(self, registry: Registry, graph: Graph) -> None:
        self.registry = registry
        self.graph = graph
        self.entries: dict[str, Entry] = {}
        self.warnings: list[Problem] = []
        self.ties: list[Tie] = []
        self.problems: list[Problem] = []
        self.blocks: list[Entry] = []  # the block uses being built, outermost first
        self.lists: list[own.Sequential] = []  # the layer lists being built, outermost first

    def module(self, entry: Entry, path: str) -> nn.Module:
        """The module for ``entry`` at ``path``; a problem with it is collected and an
        ``Identity`` stands in, so the entries after it are still checked."""
        self.entries[path] = entry
        if entry.block is not None:
            self.blocks.append(entry)
        try:
            return self._module(entry, path)
        except ShapecliError as e:
            self.problems.extend(self._in_block(p) for p in e.problems)
            return nn.Identity()
        finally:
            if entry.block is not None:
                self.blocks.pop()

    def _in_block(self, problem: Problem) -> Problem:
        if not self.blocks or problem.notes or problem.source == self.blocks[-1].source:
            return problem
        use = self.blocks[-1]
        return replace(problem, notes=(f"in block `{use.block}` used at {use.source}",))

    def _module(self, entry: Entry, path: str) -> nn.Module:
        if entry.repeat is not None:
            module: nn.Module = self._repeat(entry, path)
        elif entry.type == "Sequential":
            module = self._list(entry.kwargs.get("layers", entry.args), path, entry.closed)
        else:
            module = self._layer(entry, path)
        if not entry.trainable:
            # Attribute assignment, not requires_grad_(): lazy parameters refuse methods.
            for param in module.parameters():
                param.requires_grad = False
        self.ties.extend(
            Tie(path, name, target, entry.tie_sources.get(name, entry.source))
            for name, target in entry.tie.items()
        )
        return module

    def _repeat(self, entry: Entry, path: str) -> nn.Module:
        """``repeat: N``: N copies, each reading the one before."""
        group = own.Repeat()
        for i in range(entry.repeat or 0):
            copy = replace(entry, repeat=None, name=str(i), wiring=None)
            group.add_module(str(i), self.module(copy, join(path, str(i))))
        return group

    def _list(self, entries: ArgValue, path: str, closed: bool = False) -> own.Sequential:
        """A layer list, run as its group's program; a list that is not closed (not a
        block's body) reads the names of the lists around it while they run."""
        outer = self.lists[-1] if self.lists and not closed else None
        sequential = own.Sequential().wired(self._program(path), outer)
        self.lists.append(sequential)
        try:
            for child in entries if isinstance(entries, tuple) else ():
                assert isinstance(child, Entry)
                module = self.module(child, join(path, child.name))
                try:
                    sequential.add_module(child.name, module)
                except KeyError:  # names like `forward` or `training` are taken by nn.Module
                    self.problems.append(
                        Problem(
                            "spec-invalid",
                            f"`{child.name}` cannot name a layer: every module already has an "
                            "attribute of that name; choose another",
                            child.source,
                        )
                    )
        finally:
            self.lists.pop()
        return sequential

    def _program(self, path: str) -> Program:
        """What the list at ``path`` runs; a plain chain for a list the graph does not
        hold: one a layer runs by its own code (an ``MoE``'s experts, a layer given as a
        constructor argument)."""
        group = self.graph.groups.get(path)
        return program_of(group) if group is not None else Program()

    def _layer(self, entry: Entry, path: str) -> nn.Module:
        cls = self.registry.resolve(entry.type, entry.source)
        entry = _layers_as_arguments(cls, entry)
        bound = arguments.bind(cls, entry, path)
        auto = [name for name, value in bound.arguments.items() if value is AUTO]
        rules = auto_rules(cls)
        for name in auto:
            if name not in rules:
                capable = [n for n in rules if n in bound.signature.parameters]
                sizes = ", ".join(capable) or "this layer has none"
                message = f"`{name}` cannot be `auto`; `auto` fills input sizes only ({sizes})"
                raise arguments.entry_error(entry, path, message, key=name)
        node = self.graph.calls.get(path)
        if entry.wiring is not None:
            _check_wiring(cls, entry, path)
        elif node is not None and (given := given_count(node)) > 1:
            self.warnings.extend(_check_first(cls, entry, path, given))
        for name, value in bound.arguments.items():
            bound.arguments[name] = self._value(value, path, name, entry)
        if auto:
            return AutoSized(cls, bound, frozen=not entry.trainable)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = cls(*bound.args, **bound.kwargs)
            self.warnings.extend(layer_warning(str(w.message), entry, path) for w in caught)
            return module
        except ShapecliError:
            raise
        except own.ArgumentError as e:  # our own layers' words are the message
            raise arguments.entry_error(entry, path, str(e), cls=cls) from e
        except Exception as e:  # a constructor may raise anything; keep its message below ours
            message = "the constructor refused these arguments"
            detail = foreign_message(e)
            raise arguments.entry_error(entry, path, message, cls=cls, detail=detail) from e

    def _value(self, value: object, path: str, name: str, owner: Entry) -> object:
        """Layer lists in arguments become modules registered under the argument's name.

        Where a layer holds several lists (a Residual's ``body`` and ``shortcut``, a
        Parallel's branches), each list is a row of its own, so their layers never look
        like siblings; a lone ``body`` is not worth a row.
        """
        where = join(path, name)
        if isinstance(value, Entry):
            return self.module(value, where)
        source = owner.arg_sources.get(name, owner.source)
        shape = OWN_LAYERS.get(owner.type)
        if shape is not None and name in shape.branches and isinstance(value, tuple):
            branches = nn.ModuleList()  # a list of layer lists; an empty one passes x on
            for i, branch in enumerate(value):
                self.entries[join(where, str(i))] = Entry("Sequential", str(i), source)
                branches.append(self._list(branch, join(where, str(i))))
            return branches
        if isinstance(value, tuple) and value and all(isinstance(v, Entry) for v in value):
            lists = sum(1 for v in owner.kwargs.values() if arguments.holds_layers(v))
            if lists > 1:
                self.entries[where] = Entry("Sequential", name, source)
            return self._list(value, where)
        return value


def _layers_as_arguments(cls: type[nn.Module], entry: Entry) -> Entry:
    """A constructor that takes a layer (``TransformerEncoder``'s ``encoder_layer``) is
    given one written like an entry: ``encoder_layer: {TransformerEncoderLayer: {…}}``."""
    sig = arguments.signature(cls)
    layers: dict[str, ArgValue] = {}
    for name, value in entry.kwargs.items():
        parameter = sig.parameters.get(name)
        if parameter is None or not _takes_a_layer(parameter.annotation):
            continue
        written = {value: None} if isinstance(value, str) else value
        if isinstance(written, dict) and len(written) == 1:
            ((type_name, given),) = written.items()
            where = entry.arg_sources.get(name, entry.source)
            kwargs = given if isinstance(given, dict) else {}
            args: tuple[ArgValue, ...] = (
                given if isinstance(given, tuple) else () if given is None or kwargs else (given,)
            )
            layers[name] = Entry(type_name, name, where, args, kwargs)
    return replace(entry, kwargs={**entry.kwargs, **layers}) if layers else entry


def _takes_a_layer(annotation: object) -> bool:
    options = get_args(annotation) or (annotation,)
    return any(isinstance(o, type) and issubclass(o, nn.Module) for o in options)


def _forward_parameters(cls: type[nn.Module]) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(cls.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None


def _check_first(cls: type[nn.Module], entry: Entry, path: str, given: int) -> list[Problem]:
    """The first entry of a list with several inputs reads all ``given`` of them, unless
    its ``in:`` says otherwise: its ``forward`` must take that many (else an error), and
    a warning when some go to parameters it could do without: an ``Attention`` given
    ``x`` and ``mask`` would attend to the mask as its ``context``, and run. A layer that
    needs them all (``Add``, ``MatMul``, a ``forward(*inputs)``) is meant to get them,
    and gets no warning."""
    parameters = _forward_parameters(cls)
    if parameters is None or any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if given > len(positional):
        raise fail(
            "bad-arguments",
            f"{entry.display_type} takes {len(positional)} tensor"
            f"{'s' if len(positional) != 1 else ''} "
            f"({', '.join(p.name for p in positional) or 'none'}), but as "
            f"the first entry of its list it gets all {given} of the list's inputs",
            entry.source,
            path=path,
            layer_type=entry.type,
            hint="say which it reads with `in:`, e.g. `in: x`",
        )
    optional = [p.name for p in positional[:given] if p.default is not p.empty]
    if not optional:
        return []
    names = ", ".join(p.name for p in positional[:given])
    message = (
        f"layer {path} ({entry.display_type}) gets all {given} of its list's inputs, as the "
        f"first entry without `in:` ({names}); {', '.join(optional)} "
        f"{'is' if len(optional) == 1 else 'are'} optional, so this may not be what was meant"
    )
    return [
        Problem(
            code="layer-warning",
            message=message,
            source=entry.source,
            severity="warning",
            path=path,
            layer_type=entry.type,
            hint=f"say what it reads with `in:` (e.g. `in: {positional[0].name}` for the "
            "first input only, or every one it should get); that also ends this warning",
        )
    ]


def _check_wiring(cls: type[nn.Module], entry: Entry, path: str) -> None:
    """An ``in:`` must fit the layer's ``forward``: known keywords, not too many
    positional tensors, every required one given."""
    assert entry.wiring is not None
    parameters = _forward_parameters(cls)
    if parameters is None:
        return
    kinds = inspect.Parameter
    names = [
        p.name for p in parameters if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    ]
    any_keyword = any(p.kind is kinds.VAR_KEYWORD for p in parameters)
    any_positional = any(p.kind is kinds.VAR_POSITIONAL for p in parameters)
    where = entry.wiring.refs()[0].source if entry.wiring.refs() else entry.source
    for key, ref in entry.wiring.kwargs.items():
        if key not in names and not any_keyword:
            raise fail(
                "bad-arguments",
                f"{entry.display_type}'s forward takes no `{key}`{did_you_mean(key, names)}; "
                f"it takes {', '.join(names) or 'no tensors'}",
                ref.source or where,
                path=path,
                layer_type=entry.type,
            )
    positional = [
        p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    given = len(entry.wiring.args)
    if given > len(positional) and not any_positional:
        raise fail(
            "bad-arguments",
            f"{entry.display_type} takes at most {len(positional)} tensor"
            f"{'s' if len(positional) != 1 else ''} in order "
            f"({', '.join(p.name for p in positional) or 'none'}); `in:` gives {given}",
            where,
            path=path,
            layer_type=entry.type,
        )
    missing = [
        p.name
        for p in positional[given:]
        if p.default is kinds.empty and p.name not in entry.wiring.kwargs
    ]
    if missing:
        raise fail(
            "bad-arguments",
            f"{entry.display_type} also needs {', '.join(f'`{m}`' for m in missing)}: "
            "name them in `in:`",
            where,
            path=path,
            layer_type=entry.type,
        )


def _bind_refs(built: BuiltModel) -> list[Problem]:
    """Point every ``Ref`` at its target (which may come later in the spec), and refuse
    Refs that would call themselves, directly or through other Refs."""
    modules = dict(built.model.named_modules())
    problems: list[Problem] = []
    refs: dict[str, str] = {}
    for path, module in modules.items():
        if not isinstance(module, own.Ref):
            continue
        entry = built.entries.get(path)
        source = entry.source if entry else None
        target = module.path
        message = None
        if target not in modules or not target:
            message = f"`Ref: {target}` names no layer{did_you_mean(target, list(modules))}"
        elif path == target or path.startswith(target + "."):
            message = f"`Ref: {target}` is this layer or contains it: it would call itself"
        elif isinstance(modules[target], own.Ref):
            message = f"`Ref: {target}` names another Ref; name its target"
        if message:
            problems.append(Problem("spec-invalid", message, source, path=path))
            continue
        # Held, not registered: the target's parameters live (and count) at its own path.
        object.__setattr__(module, "target", modules[target])
        refs[path] = target
    problems.extend(_ref_cycles(refs, built.entries))
    return problems


def _ref_cycles(refs: dict[str, str], entries: dict[str, Entry]) -> list[Problem]:
    """A Ref whose target contains a Ref whose target … contains the first Ref calls
    itself forever: one problem per cycle, at the Ref that closes it."""

    calls = {r: [other for other in refs if other.startswith(t + ".")] for r, t in refs.items()}
    problems = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(ref: str, trail: list[str]) -> None:
        state[ref] = 1
        for nxt in calls[ref]:
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt) :], nxt]
                chain = " → ".join(f"{r} (Ref: {refs[r]})" for r in loop)
                entry = entries.get(ref)
                problems.append(
                    Problem(
                        "spec-invalid",
                        f"these Refs call each other forever: {chain}",
                        entry.source if entry else None,
                        path=ref,
                        hint="a Ref cannot reach itself through its target",
                    )
                )
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[ref] = 2

    for ref in refs:
        if ref not in state:
            visit(ref, [ref])
    return problems


def _check_ties(built: BuiltModel, ties: list[Tie]) -> list[Tie]:
    names = [name for name, _ in built.model.named_parameters()]
    for tie in ties:
        module = built.model.get_submodule(tie.path)
        if tie.param not in module._parameters or module._parameters[tie.param] is None:
            if isinstance(module, AutoSized):
                continue  # an auto layer has no parameters until it runs; checked then
            own_names = [n for n, p in module._parameters.items() if p is not None]
            raise fail(
                "spec-invalid",
                f"`tie: {{{tie.param}: …}}`: this layer has no parameter `{tie.param}`"
                f"{did_you_mean(tie.param, own_names)}",
                tie.source,
            )
        if tie.target not in names:
            raise fail(
                "spec-invalid",
                f"`tie`: there is no parameter `{tie.target}`{did_you_mean(tie.target, names)}",
                tie.source,
            )
    return ties
