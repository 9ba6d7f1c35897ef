"""Check a layer's arguments against its constructor before torch sees them.

torch's constructors accept surprising things (``out_features="4"`` fails deep inside
``torch.empty``; on the meta device ``kernel_size=0`` or ``stride=0`` build without
complaint and only fail — or silently produce nonsense — later). So every argument is
checked here, with the entry's line in hand:

1. the call binds to the signature (unknown keyword → "did you mean");
2. each value matches the parameter's annotation (or its default's type when there is
   no annotation), described in words when it does not;
3. sizes are positive, paddings non-negative, probabilities in [0, 1], by parameter
   name — the names torch uses consistently for these roles.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from shapecli.errors import ShapecliError, did_you_mean, fail
from shapecli.spec import yaml_nodes
from shapecli.spec.model import AUTO, ENTRY_OPTIONS, Entry

#: Parameters whose values (each value, for tuples) must be at least 1.
POSITIVE = frozenset(
    [
        "in_features",
        "out_features",
        "in1_features",
        "in2_features",
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "dilation",
        "num_features",
        "num_channels",
        "num_groups",
        "groups",
        "embed_dim",
        "num_heads",
        "nhead",
        "d_model",
        "dim_feedforward",
        "hidden_size",
        "input_size",
        "num_layers",
        "num_embeddings",
        "embedding_dim",
        "kdim",
        "vdim",
        "num_parameters",
        "upscale_factor",
        "downscale_factor",
        "num_encoder_layers",
        "num_decoder_layers",
        "output_size",
        "size",
    ]
)
#: Parameters whose values must be at least 0.
NON_NEGATIVE = frozenset({"padding", "output_padding", "proj_size"})
#: Probabilities.
PROBABILITY = frozenset({"p", "dropout"})
#: Where shapecli, not the spec, decides.
FORBIDDEN = {
    "device": "shapecli places every layer on the meta device itself",
    "dtype": "layers are built in float32",
}

_RNN_PARAMS: list[tuple[str, Any, Any]] = [
    ("input_size", int, inspect.Parameter.empty),
    ("hidden_size", int, inspect.Parameter.empty),
    ("num_layers", int, 1),
    ("bias", bool, True),
    ("batch_first", bool, False),
    ("dropout", float, 0.0),
    ("bidirectional", bool, False),
]


def _signature(params: list[tuple[str, Any, Any]]) -> inspect.Signature:
    return inspect.Signature(
        [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=a
            )
            for name, a, d in params
        ]
    )


#: Constructors that take ``*args, **kwargs`` and document their real signature elsewhere.
SIGNATURES: dict[str, inspect.Signature] = {
    "RNN": _signature(
        [*_RNN_PARAMS[:3], ("nonlinearity", Literal["tanh", "relu"], "tanh"), *_RNN_PARAMS[3:]]
    ),
    "LSTM": _signature([*_RNN_PARAMS, ("proj_size", int, 0)]),
    "GRU": _signature(_RNN_PARAMS),
}


def signature(cls: type) -> inspect.Signature:
    """The constructor signature with annotations resolved where possible (cached)."""
    return _signature_of(cls)


@functools.cache
def _signature_of(cls: type) -> inspect.Signature:
    """The constructor signature with annotations resolved where possible."""
    if cls.__name__ in SIGNATURES and cls.__module__.startswith("torch.nn"):
        return SIGNATURES[cls.__name__]
    sig = inspect.signature(cls)
    hints = _hints(cls)
    becomes = getattr(cls, "cls_to_become", None)
    if isinstance(becomes, type):
        # A Lazy* layer passes its arguments on to the layer it becomes, whose types are
        # the ones that hold (LazyConv2d's `padding` says int, Conv2d's takes "same").
        hints.update({k: v for k, v in _hints(becomes).items() if k in sig.parameters})
    return sig.replace(
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
        ]
    )


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:  # unresolvable forward references: fall back to the raw ones
        return {}


def _crops(cls: type) -> bool:
    """Does a negative ``padding`` of ``cls`` crop instead of pad? It does for torch's
    padding layers (``F.pad``), not for convolutions, which refuse it."""
    from torch.nn.modules import padding

    bases = tuple(
        getattr(padding, name)
        for name in ("_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd", "_CircularPadNd")
        if hasattr(padding, name)
    )
    return issubclass(cls, bases)


def bind(cls: type, entry: Entry, path: str) -> inspect.BoundArguments:
    """Bind and check an entry's arguments; raise ``bad-arguments`` at the bad one."""
    sig = signature(cls)
    for key in entry.kwargs:
        if key in FORBIDDEN:
            raise _bad(entry, path, key, f"`{key}` cannot be set in a spec: {FORBIDDEN[key]}")
        named = (
            key in sig.parameters and sig.parameters[key].kind is not inspect.Parameter.VAR_KEYWORD
        )
        if key in ENTRY_OPTIONS and not named:
            raise fail(
                "spec-invalid",
                f"`{key}:` is an entry option, not an argument of {entry.display_type}: it is "
                f"indented one level too deep",
                entry.arg_sources.get(key, entry.source),
                path=path,
                hint=f"write `{key}:` in the same column as `{entry.display_type}:`, not under it",
            )
    try:
        bound = sig.bind(*entry.args, **entry.kwargs)
    except TypeError as e:
        raise _binding_error(cls, entry, path, e) from None
    for name, value in bound.arguments.items():
        parameter = sig.parameters[name]
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if value is AUTO or holds_layers(value):
            continue  # auto sizes are checked when filled; layer lists by the parser
        key = _key_of(entry, sig, name)
        expected = _expected_type(parameter)
        if expected is not None and not matches(value, expected):
            raise _bad(entry, path, key, _type_message(name, value, expected))
        problem = _range_problem(name, value, crops=_crops(cls))
        if problem:
            raise _bad(entry, path, key, problem)
    return bound


def holds_layers(value: object) -> bool:
    """Does an argument value contain layers (entries) rather than plain values?"""
    if isinstance(value, Entry):
        return True
    return isinstance(value, tuple) and any(holds_layers(v) for v in value)


def usage(cls: type, type_name: str, auto: tuple[str, ...] = ()) -> str:
    """``LazyLinear(out_features: int, bias: bool = true)`` without device/dtype;
    arguments in ``auto`` are marked ``| auto``."""
    parts = []
    takes_nothing = getattr(cls, "__init__", None) is _module_init()
    for p in signature(cls).parameters.values():
        if p.name in FORBIDDEN or p.name.startswith("_") or takes_nothing:
            continue
        text = p.name
        if p.annotation is not inspect.Parameter.empty:
            text += f": {describe(p.annotation, short=True)}"
        if p.name in auto:
            text += " | auto"
        if p.default is not inspect.Parameter.empty:
            text += f" = {_show_default(p.default)}"
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + text
        parts.append(text)
    return f"{type_name}({', '.join(parts)})"


def _module_init() -> object:
    from torch import nn

    return nn.Module.__init__


# -- type matching -----------------------------------------------------------------------


def _expected_type(parameter: inspect.Parameter) -> Any:
    if parameter.annotation is not inspect.Parameter.empty and not isinstance(
        parameter.annotation, str
    ):
        return parameter.annotation
    # bool before int: a bool is an int too
    return next((t for t in (bool, int, float) if isinstance(parameter.default, t)), None)


def matches(value: object, expected: Any) -> bool:
    """Does a YAML-derived value fit an annotation? Unknown constructs are accepted."""
    if expected is Any or isinstance(expected, typing.TypeVar):
        return True
    if expected is type(None) or expected is None:
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return value in args and not isinstance(value, bool)
    if origin in (tuple, list, Sequence) or (
        isinstance(expected, type) and issubclass(expected, tuple)
    ):
        if not isinstance(value, tuple):
            return False
        if not args:  # plain tuple / torch.Size: a tuple of ints
            return all(matches(v, int) for v in value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(
                matches(v, a) for v, a in zip(value, args, strict=True)
            )
        return all(matches(v, args[0]) for v in value)
    if origin is not None and origin is typing.get_origin(Callable[[], None]):
        return False  # a callable cannot come from YAML
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def describe(expected: Any, short: bool = False) -> str:
    """An annotation in words: ``a whole number or a list of 2 whole numbers``."""
    if expected is type(None) or expected is None:
        return "null"
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if expected in words:
        return expected.__name__ if short else words[expected]
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        parts = dict.fromkeys(describe(a, short) for a in args)  # tuple and list: one "list"
        return " | ".join(parts) if short else " or ".join(parts)
    if origin is Literal:
        return (
            " | ".join(repr(a) for a in args)
            if short
            else "one of " + ", ".join(repr(a) for a in args)
        )
    if origin in (tuple, list) or (isinstance(expected, type) and issubclass(expected, tuple)):
        if short:
            return "list"
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} {describe(args[0]).removeprefix('a ')}s"
        return "a list"
    return getattr(expected, "__name__", str(expected))


def _type_message(name: str, value: object, expected: Any) -> str:
    got = f"the text {value!r}" if isinstance(value, str) else repr(value)
    if isinstance(value, bool):
        got = str(value).lower()
    elif isinstance(value, tuple):
        got = f"the list {list(value)!r}"
    message = f"`{name}` must be {describe(expected)}, not {got}"
    arithmetic = isinstance(value, str) and re.fullmatch(r"[\d\s.+\-*/%()]+", value)
    yaml11 = yaml_nodes.yaml11_hint(value)
    if yaml11 and matches(True, expected):
        message += f" ({yaml11})"
    elif arithmetic and re.search(r"[+\-*/%]", str(value)) and matches(0, expected):
        message += (
            " (only a string that is exactly one `${…}` is evaluated: put the whole "
            'expression inside it, e.g. "${hidden // 2}")'
        )
    elif isinstance(value, str) and (close := did_you_mean(value, _text_choices(expected))):
        message += close
    elif isinstance(value, str) and _numeric(value) and matches(0, expected):
        message += " (write the number without quotes)"
    elif isinstance(value, float) and value.is_integer() and matches(0, expected):
        message += f" (write {int(value)}; in an expression `//` divides to a whole number)"
    return message


def _text_choices(expected: Any) -> list[str]:
    """The words an annotation allows (``Literal["zeros", "ones"]``, in a union too),
    for a did-you-mean on a misspelled one."""
    origin = typing.get_origin(expected)
    if origin is Literal:
        return [a for a in typing.get_args(expected) if isinstance(a, str)]
    if origin in (typing.Union, types.UnionType):
        return [c for a in typing.get_args(expected) for c in _text_choices(a)]
    return []


def _numeric(text: str) -> bool:
    """Does quoted text read as a number (``'16'``, ``'1e-6'``)? Only then is "write the
    number without quotes" the fix; ``'zeross'`` is no number however it is quoted."""
    try:
        float(text)
    except ValueError:
        return False
    return True


INT64_MAX = 2**63 - 1


def _range_problem(name: str, value: object, crops: bool = False) -> str | None:
    values = value if isinstance(value, tuple) else (value,)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if any(isinstance(v, int) and abs(v) > INT64_MAX for v in _ints(value)):
        return f"`{name}` is too large: {value!r} does not fit in 64 bits"
    if name in POSITIVE and any(v < 1 for v in numbers):
        return f"`{name}` must be at least 1, not {value!r}"
    if name in NON_NEGATIVE and any(v < 0 for v in numbers) and not (crops and name == "padding"):
        return f"`{name}` cannot be negative, not {value!r}"
    if name in PROBABILITY and any(not 0 <= v <= 1 for v in numbers):
        return f"`{name}` is a probability between 0 and 1, not {value!r}"
    return None


def _ints(value: object) -> list[int]:
    if isinstance(value, tuple):
        return [i for v in value for i in _ints(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


# -- errors ------------------------------------------------------------------------------


def _key_of(entry: Entry, sig: inspect.Signature, name: str) -> str:
    """The key of ``entry.arg_sources`` where argument ``name`` is written."""
    if name in entry.kwargs:
        return name
    positional = [p.name for p in sig.parameters.values()]
    index = positional.index(name) if name in positional else 0
    return str(index)


def entry_error(
    entry: Entry,
    path: str,
    message: str,
    *,
    key: str | None = None,
    cls: type | None = None,
    detail: str | None = None,
) -> ShapecliError:
    """``bad-arguments`` for an entry: at the argument ``key`` if given, with the
    layer's usage as the hint when ``cls`` is given."""
    return fail(
        "bad-arguments",
        f"{entry.display_type}: {message}",
        entry.arg_sources.get(key, entry.source) if key else entry.source,
        path=path,
        layer_type=entry.type,
        hint=f"takes {usage(cls, entry.type)}" if cls else None,
        detail=detail,
    )


def _bad(entry: Entry, path: str, key: str, message: str) -> ShapecliError:
    return entry_error(entry, path, message, key=key)


def _binding_error(cls: type, entry: Entry, path: str, error: TypeError) -> ShapecliError:
    sig = signature(cls)
    names = [p.name for p in sig.parameters.values() if p.name not in FORBIDDEN]
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for key in entry.kwargs:
        if key not in sig.parameters and not accepts_kwargs:
            return _bad(entry, path, key, f"unknown argument `{key}`{did_you_mean(key, names)}")
    try:
        given = set(sig.bind_partial(*entry.args, **entry.kwargs).arguments)
    except TypeError:
        given = set(entry.kwargs)
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in given
    ]
    text = str(error).replace("__init__() ", "")
    if "missing" in text and missing:
        message = f"missing required argument(s): {', '.join(missing)}"
    elif "too many positional" in text:
        message = f"too many arguments ({len(entry.args)} given)"
    else:
        message = text
    return entry_error(entry, path, message, cls=cls)


def _show_default(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if callable(value):
        return getattr(value, "__name__", "…")
    return repr(value)
