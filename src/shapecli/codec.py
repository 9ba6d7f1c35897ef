"""One typed codec: dataclasses to JSON and back, and their JSON Schema, read from the
type hints.

No JSON form is written by hand: :func:`encode` walks a dataclass's fields,
:func:`decode` checks a parsed document against the same hints and rebuilds the
dataclass, and :func:`schema` publishes the hints as JSON Schema. So a field added to
a dataclass is written, read, checked and published with nothing else to change — no
list of keys to keep in step. What a hint cannot say is said beside it with
``Annotated`` markers: :class:`Key` (the JSON name, where it differs from the
attribute's), :class:`Range` (an integer's bounds), :class:`OneOf` (a closed
vocabulary), :class:`NullFor` (a value written as null), :class:`Added` (a key added
after its type was first published) and :class:`Via` (a value written in another
form). A class names its read-only properties in ``DERIVED`` (``ok``): they are
written, need not be given, and must agree with the fields when they are.

Decoding refuses, with the JSON path of the first problem, whatever the encoder could
not have written: a float or ``true`` where an integer is, an integer outside int64 or
its range, a string where a number is, a value outside a vocabulary, a missing or
unexpected key, nesting the types do not have. A key is required unless it is derived
or :class:`Added`, so a type that grows a field keeps reading what was written before
only when the new field says so. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal

Schema = dict[str, Any]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_ABSENT: Any = object()  # no default (dataclasses.MISSING would mean that to a dataclass)


# -- markers, used inside Annotated[...] -------------------------------------------------


# Plain classes, not dataclasses: errors.py imports these on every start of the CLI,
# and each dataclass costs milliseconds to create.


class Key:
    """The field's name in JSON, where it differs from the attribute's."""

    def __init__(self, name: str) -> None:
        self.name = name


class Range:
    """The bounds of an integer (every integer is within int64 in any case)."""

    def __init__(self, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> None:
        self.minimum, self.maximum = minimum, maximum


class OneOf:
    """A string from a closed vocabulary (a collection's items, a mapping's keys)."""

    def __init__(self, values: Collection[str]) -> None:
        self.values = tuple(values)


class NullFor:
    """This attribute value is written as null (``line`` 0, the file as a whole)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Added:
    """A key added to a published form: optional on input, so documents written before
    it still load — with the field's default, or ``default`` for a field without one."""

    def __init__(self, default: Any = _ABSENT) -> None:
        self.default = default


class Via:
    """A value written in another form: ``write`` turns it into a value of ``form`` (a
    type hint), ``read`` turns that back. For the odd published form the attribute
    cannot have itself."""

    def __init__(self, form: Any, write: Callable[[Any], Any], read: Callable[[Any], Any]):
        self.form, self.write, self.read = form, write, read


class DecodeError(ValueError):
    """A document that does not match its type, at ``path`` (``$.layers[3].depth``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# -- the public functions ---------------------------------------------------------------


def encode(value: Any, hint: Any = None) -> Any:
    """``value`` as JSON-ready data (dicts, lists, str, int, float, bool, None), by its
    type hint (default: its class)."""
    target: Any = type(value) if hint is None else hint
    return compile_hint(target).encode(value)


def decode(hint: Any, document: Any, path: str = "$") -> Any:
    """The value of type ``hint`` that ``document`` (parsed JSON) encodes; raises
    :class:`DecodeError` at the first thing that does not match."""
    return compile_hint(hint).decode(document, (path,))


def schema(hint: Any) -> Schema:
    """The JSON Schema (draft 2020-12) of ``hint``'s JSON form: dataclasses in
    ``$defs`` by class name."""
    defs: dict[str, Schema] = {}
    root = compile_hint(hint).schema(defs)
    document: Schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}
    if defs:
        document["$defs"] = dict(sorted(defs.items()))
    return document


def loads(text: str, max_depth: int) -> Any:
    """``json.loads``, refusing what json.loads does not: a key twice in one object
    (which of the two would count is a parser's whim), and nesting so deep that it
    exhausts the stack (:class:`DecodeError` at the first container deeper than
    ``max_depth``, instead of a RecursionError)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        where = _too_deep(text, max_depth)
        raise DecodeError(where, f"nested deeper than {max_depth} levels") from None
    except DecodeError:
        raise
    except ValueError as e:  # not JSON, not UTF-8, a number of thousands of digits
        raise DecodeError("$", f"not JSON: {e}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DecodeError("$", f"the key {shown(key)} appears twice in one object")
            seen.add(key)
    return made


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[][{},:]')


def _too_deep(text: str, limit: int) -> str:
    """The JSON path of the first array or object in ``text`` nested deeper than
    ``limit`` (a scan of its tokens: parsing it is what failed)."""
    stack: list[list[Any]] = []  # per open container: [segment, is_object, expects_key]
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            if len(stack) >= limit:
                return path_text(_chain(stack))
            stack.append([None, True, True] if token == "{" else [0, False, False])
        elif token in "]}" and stack:
            stack.pop()
        elif token == "," and stack:
            top = stack[-1]
            if top[1]:
                top[2] = True
            else:
                top[0] += 1
        elif token == ":" and stack:
            stack[-1][2] = False
        elif token.startswith('"') and stack and stack[-1][1] and stack[-1][2]:
            stack[-1][0] = _key(token)
    return "$"


def _key(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError:  # a bad escape: the key as written
        return token[1:-1]


def _chain(stack: list[list[Any]]) -> At:
    at: At = ("$",)
    for segment, *_ in stack:
        at = (at, segment)
    return at


def depth(hint: Any) -> int:
    """How deeply arrays and objects nest in ``hint``'s JSON form (``[[1]]`` is 2)."""
    return compile_hint(hint).depth()


# -- the compiled form of a type ---------------------------------------------------------

#: A JSON path as a chain of (parent, segment) pairs from the root ``("$",)``, turned
#: into text only for an error message.
At = tuple[Any, ...]


def path_text(at: At) -> str:
    """``(((("$",), "layers"), 3), "depth")`` as ``$.layers[3].depth``; a key that is not
    a name is quoted: ``$["a b"]``."""
    segments = []
    while len(at) == 2:
        at, segment = at
        segments.append(segment)
    parts = [str(at[0])]
    for segment in reversed(segments):
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif segment.isidentifier() and segment.isascii():
            parts.append(f".{segment}")
        else:
            parts.append(f"[{json.dumps(segment)}]")
    return "".join(parts)


def _fail(at: At, reason: str) -> DecodeError:
    return DecodeError(path_text(at), reason)


def shown(value: Any) -> str:
    """A value from a document, short and safe to print (control characters escaped)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        digits = str(abs(value))
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[:12]}… ({len(digits)} digits)" if len(digits) > 20 else str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    if isinstance(value, str):
        return quoted(value, 40)
    return "an array" if isinstance(value, list) else "an object"


def quoted(text: str, limit: int) -> str:
    """``text`` in double quotes, cut after ``limit`` characters, with everything that is
    not printable (controls, line separators, bidi overrides) escaped as in JSON."""
    body = json.dumps(text[:limit], ensure_ascii=False)
    body = "".join(c if c.isprintable() else _escape(c) for c in body)
    return body + "…" if len(text) > limit else body


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _encodable(text: str) -> bool:
    """Whether ``text`` is characters only: JSON's ``\\ud800`` escape makes a lone
    surrogate, which no output stream can write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KINDS = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_kind(value: Any) -> str:
    return _KINDS.get(type(value), "unknown")


class Kind:
    """How one type is written, read, checked and published."""

    kinds: frozenset[str] = frozenset()  # the JSON kinds it accepts: "integer", "array" …
    expected = "a value"
    plain = False  # written as it is: encode() is the identity
    nests = False  # an array or an object: one level of nesting
    parts: tuple[Kind, ...] = ()  # the kinds of what it holds

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any, at: At) -> Any:
        if _json_kind(value) not in self.kinds:
            raise self.refused(value, at)
        return value

    def refused(self, value: Any, at: At) -> DecodeError:
        return _fail(at, f"expected {self.expected}, got {shown(value)}")

    def schema(self, defs: dict[str, Schema]) -> Schema:
        raise NotImplementedError

    def depth(self) -> int:
        return self.nests + max((part.depth() for part in self.parts), default=0)


class Scalar(Kind):
    """null, true or false, a string, a finite number: checked, and written as it is."""

    plain = True

    def __init__(self, kind: str, expected: str) -> None:
        self.kind, self.expected = kind, expected
        self.kinds = frozenset({kind, "integer"} if kind == "number" else {kind})

    def decode(self, value: Any, at: At) -> Any:
        super().decode(value, at)
        if self.kind == "number":
            if not math.isfinite(value):
                raise self.refused(value, at)
            return float(value)
        if self.kind == "string" and not value.isascii() and not _encodable(value):
            raise _fail(at, f"expected {self.expected} of characters, got {shown(value)}")
        return value

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"type": self.kind}


class Integer(Kind):
    kinds = frozenset({"integer"})
    plain = True

    def __init__(self, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> None:
        self.minimum = max(minimum, INT64_MIN)
        self.maximum = min(maximum, INT64_MAX)
        top = "2**63 - 1" if self.maximum == INT64_MAX else str(self.maximum)
        self.expected = (
            "an integer"
            if (self.minimum, self.maximum) == (INT64_MIN, INT64_MAX)
            else f"an integer from {self.minimum} to {top}"
        )

    def decode(self, value: Any, at: At) -> Any:
        if type(value) is not int or not self.minimum <= value <= self.maximum:
            raise self.refused(value, at)
        return value

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


class Choice(Kind):
    """One of a few values: a ``Literal``, or a string :class:`OneOf` a vocabulary."""

    plain = True

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.kinds = frozenset(_json_kind(v) for v in values)
        listed = ", ".join(json.dumps(v) for v in values[:8])
        more = f" … ({len(values) - 8} more)" if len(values) > 8 else ""
        self.expected = f"one of {listed}{more}"

    def decode(self, value: Any, at: At) -> Any:
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise self.refused(value, at)
        return value

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"const": self.values[0]} if len(self.values) == 1 else {"enum": list(self.values)}


class Members(Choice):
    """An ``Enum``: written as its members' values."""

    plain = False

    def __init__(self, cls: type[enum.Enum]) -> None:
        super().__init__(tuple(member.value for member in cls))
        self.cls = cls

    def encode(self, value: Any) -> Any:
        return value.value

    def decode(self, value: Any, at: At) -> Any:
        return self.cls(super().decode(value, at))


class Array(Kind):
    """``tuple[X, ...]`` or ``list[X]``: a JSON array of X."""

    kinds = frozenset({"array"})
    expected = "an array"
    nests = True

    def __init__(self, item: Kind, container: type) -> None:
        self.item = item
        self.container = container
        self.parts = (item,)

    def encode(self, value: Any) -> Any:
        return list(value) if self.item.plain else [self.item.encode(v) for v in value]

    def decode(self, value: Any, at: At) -> Any:
        super().decode(value, at)
        return self.container(self.item.decode(v, (at, i)) for i, v in enumerate(value))

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"type": "array", "items": self.item.schema(defs)}


class Fixed(Kind):
    """``tuple[A, B]``: a JSON array of exactly these items."""

    kinds = frozenset({"array"})
    nests = True

    def __init__(self, items: tuple[Kind, ...]) -> None:
        self.items = self.parts = items
        self.expected = f"an array of {len(items)} items"

    def encode(self, value: Any) -> Any:
        return [kind.encode(v) for kind, v in zip(self.items, value, strict=True)]

    def decode(self, value: Any, at: At) -> Any:
        super().decode(value, at)
        if len(value) != len(self.items):
            raise _fail(at, f"expected {self.expected}, got {len(value)}")
        pairs = enumerate(zip(self.items, value, strict=True))
        return tuple(kind.decode(v, (at, i)) for i, (kind, v) in pairs)

    def schema(self, defs: dict[str, Schema]) -> Schema:
        n = len(self.items)
        prefix = [kind.schema(defs) for kind in self.items]
        return {
            "type": "array",
            "prefixItems": prefix,
            "items": False,
            "minItems": n,
            "maxItems": n,
        }


class Mapping(Kind):
    """``dict[str, X]``: a JSON object with any keys."""

    kinds = frozenset({"object"})
    expected = "an object"
    nests = True

    def __init__(self, value: Kind) -> None:
        self.value = value
        self.parts = (value,)

    def encode(self, value: Any) -> Any:
        return {k: self.value.encode(v) for k, v in value.items()}

    def decode(self, value: Any, at: At) -> Any:
        super().decode(value, at)
        for key in value:
            compile_hint(str).decode(key, (at, key))
        return {k: self.value.decode(v, (at, k)) for k, v in value.items()}

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"type": "object", "additionalProperties": self.value.schema(defs)}


class Union(Kind):
    """``A | B``: the alternative is chosen by the JSON kind of the value, so an error
    inside it is reported where it is (two alternatives may not share a kind)."""

    def __init__(self, alternatives: tuple[Kind, ...]) -> None:
        self.alternatives = self.parts = alternatives
        self.by_kind = {kind: a for a in alternatives for kind in a.kinds}
        self.kinds = frozenset(self.by_kind)
        if sum(len(a.kinds) for a in alternatives) != len(self.kinds):
            raise TypeError("a union's alternatives must differ in JSON kind")
        self.expected = " or ".join(a.expected for a in alternatives)
        self.plain = all(a.plain for a in alternatives)

    def encode(self, value: Any) -> Any:
        return value if self.plain else self.by_kind[_python_kind(value)].encode(value)

    def decode(self, value: Any, at: At) -> Any:
        part = self.by_kind.get(_json_kind(value))
        if part is None:
            raise self.refused(value, at)
        return _decode_as(part, self, value, at)

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"anyOf": [a.schema(defs) for a in self.alternatives]}


def _decode_as(part: Kind, whole: Kind, value: Any, at: At) -> Any:
    """``value`` decoded as one alternative of ``whole``; a single value out of range
    is described by everything ``whole`` accepts (``… or null``)."""
    try:
        return part.decode(value, at)
    except DecodeError as e:
        if part.depth() == 0 and e.path == path_text(at):
            raise whole.refused(value, at) from None
        raise


def _python_kind(value: Any) -> str:
    """The JSON kind a Python value is written as."""
    if isinstance(value, enum.Enum):
        return _json_kind(value.value)
    if isinstance(value, tuple | list):
        return "array"
    if dataclasses.is_dataclass(value):
        return "object"
    return _json_kind(value)


class Nullable(Kind):
    """:class:`NullFor`: one attribute value written as null, the others as ``inner``."""

    def __init__(self, inner: Kind, sentinel: Any) -> None:
        self.inner = inner
        self.parts = (inner,)
        self.sentinel = sentinel
        self.kinds = inner.kinds | {"null"}
        self.expected = f"{inner.expected} or null"

    def encode(self, value: Any) -> Any:
        return None if value == self.sentinel else self.inner.encode(value)

    def decode(self, value: Any, at: At) -> Any:
        if value is None:
            return self.sentinel
        return _decode_as(self.inner, self, value, at)

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return {"anyOf": [self.inner.schema(defs), {"type": "null"}]}


class Through(Kind):
    """:class:`Via`: written as ``form``."""

    def __init__(self, form: Kind, via: Via) -> None:
        self.form = form
        self.parts = (form,)
        self.via = via
        self.kinds = form.kinds
        self.expected = form.expected

    def encode(self, value: Any) -> Any:
        return self.form.encode(self.via.write(value))

    def decode(self, value: Any, at: At) -> Any:
        return self.via.read(self.form.decode(value, at))

    def schema(self, defs: dict[str, Schema]) -> Schema:
        return self.form.schema(defs)


class Field(typing.NamedTuple):
    """One key of a record: the attribute it holds, how it is written, and whether a
    document must have it (``default``: what it is when absent)."""

    name: str
    key: str
    kind: Kind
    required: bool
    default: Any = _ABSENT
    derived: bool = False


class Record(Kind):
    """A dataclass: a JSON object with its derived properties first, then one key per
    field."""

    kinds = frozenset({"object"})
    expected = "an object"
    nests = True

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls, include_extras=True)
        self.fields = tuple(_field(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
        self.derived = tuple(_derived(cls, name) for name in getattr(cls, "DERIVED", ()))
        self.by_key = {f.key: f for f in (*self.derived, *self.fields)}
        if len(self.by_key) != len(self.fields) + len(self.derived):
            raise TypeError(f"{cls.__name__}: two fields have the same JSON key")
        self.parts = tuple(f.kind for f in self.by_key.values())
        # what encode() does per key, looked up once: reports have thousands of rows
        self.plan = [
            (f.key, f.name, None if f.kind.plain else f.kind.encode) for f in self.by_key.values()
        ]

    def encode(self, value: Any) -> Any:
        return {
            key: getattr(value, name) if write is None else write(getattr(value, name))
            for key, name, write in self.plan
        }

    def decode(self, value: Any, at: At) -> Any:
        super().decode(value, at)
        given: dict[str, Any] = {}
        for key, item in value.items():
            field = self.by_key.get(key)
            if field is None:
                raise _fail((at, key), f"unexpected key (a {self.cls.__name__} has no such field)")
            if not field.derived:
                given[field.name] = field.kind.decode(item, (at, key))
        if len(given) < len(self.fields):
            self._absent(given, at)
        made = self.cls(**given)
        for field in self.derived:
            if field.key in value:
                _check_derived(made, field, value[field.key], (at, field.key))
        return made

    def _absent(self, given: dict[str, Any], at: At) -> None:
        """Fill in the keys a document may leave out; refuse one it may not."""
        for field in self.fields:
            if field.name not in given:
                if field.required:
                    raise _fail(at, f"missing key {json.dumps(field.key)}")
                if field.default is not _ABSENT:
                    given[field.name] = field.default

    def schema(self, defs: dict[str, Schema]) -> Schema:
        name = self.cls.__name__
        if defs.setdefault(name, {}):
            return {"$ref": f"#/$defs/{name}"}
        derived = {f.key: {**f.kind.schema(defs), "readOnly": True} for f in self.derived}
        defs[name] = {
            **_description(self.cls),
            "type": "object",
            "properties": {**derived, **{f.key: f.kind.schema(defs) for f in self.fields}},
            "required": [f.key for f in self.fields if f.required],
            "additionalProperties": False,
        }
        return {"$ref": f"#/$defs/{name}"}


def _check_derived(made: Any, field: Field, given: Any, at: At) -> None:
    """A derived key need not be given; given, it must be what the fields imply."""
    implied = field.kind.encode(getattr(made, field.name))
    if not _same_json(given, implied):
        raise _fail(at, f"is {shown(given)}, but the rest of the document implies {shown(implied)}")


def _field(field: dataclasses.Field[Any], hint: Any) -> Field:
    markers = typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()
    key = next((m.name for m in markers if isinstance(m, Key)), field.name)
    added = next((m for m in markers if isinstance(m, Added)), None)
    default: Any = _ABSENT
    if added is not None:
        default = added.default
        no_default = field.default is field.default_factory is dataclasses.MISSING
        if default is _ABSENT and no_default:
            raise TypeError(f"{field.name}: an Added field needs a default")
    return Field(field.name, key, compile_hint(hint), added is None, default)


def _derived(cls: type, name: str) -> Field:
    prop = getattr(cls, name, None)
    if not isinstance(prop, property) or prop.fget is None:
        raise TypeError(f"{cls.__name__}.{name} is listed in DERIVED but is not a property")
    hint = typing.get_type_hints(prop.fget, include_extras=True)["return"]
    return Field(name, name, compile_hint(hint), required=False, derived=True)


def _description(cls: type) -> Schema:
    """The first paragraph of the class's docstring, without reStructuredText roles."""
    doc = cls.__doc__ or ""
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return {}
    text = " ".join(doc.split("\n\n")[0].split())
    return {"description": re.sub(r":\w+:`~?([^`]*)`", r"`\1`", text).replace("``", "`")}


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``1`` is not ``true``, nor ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


# -- from a type hint to its Kind --------------------------------------------------------


@functools.cache
def compile_hint(hint: Any) -> Kind:
    """The :class:`Kind` of a type hint (cached: each type is read once)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _annotated(args[0], args[1:])
    if hint in _SCALARS or hint is None:
        return _SCALARS[type(None) if hint is None else hint]()
    if origin is Literal:
        return Choice(args)
    if origin in (typing.Union, types.UnionType):
        return Union(tuple(compile_hint(a) for a in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return Array(compile_hint(args[0]), tuple)
    if origin is tuple:
        return Fixed(tuple(compile_hint(a) for a in args))
    if origin is list:
        return Array(compile_hint(args[0]), list)
    if origin is dict and args[0] is str:
        return Mapping(compile_hint(args[1]))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return Record(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return Members(hint)
    raise TypeError(f"the codec cannot write {hint!r}")


_SCALARS: dict[Any, Callable[[], Kind]] = {
    type(None): lambda: Scalar("null", "null"),
    bool: lambda: Scalar("boolean", "true or false"),
    int: Integer,
    float: lambda: Scalar("number", "a finite number"),
    str: lambda: Scalar("string", "a string"),
}


def _annotated(base: Any, markers: tuple[Any, ...]) -> Kind:
    via = next((m for m in markers if isinstance(m, Via)), None)
    if via is not None:
        return Through(compile_hint(via.form), via)
    kind = compile_hint(base)
    for marker in markers:
        if isinstance(marker, Range):
            if not isinstance(kind, Integer):
                raise TypeError(f"Range applies to int, not {base!r}")
            kind = Integer(max(marker.minimum, kind.minimum), min(marker.maximum, kind.maximum))
        elif isinstance(marker, OneOf):
            if not (isinstance(kind, Scalar) and kind.kind == "string"):
                raise TypeError(f"OneOf applies to str, not {base!r}")
            kind = Choice(marker.values)
    for marker in markers:
        if isinstance(marker, NullFor):
            kind = Nullable(kind, marker.value)
    return kind
