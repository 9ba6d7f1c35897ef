"""Untrusted YAML text → a tree of located nodes.

Specs arrive in pull requests, so this loader trusts nothing. It builds its own nodes
from PyYAML's *event* stream (the C parser when available) rather than using a
constructor, which gives it full control at no cost:

* no Python objects are ever constructed from tags — any explicit tag is an error;
* scalars follow YAML 1.2's core schema (``no``/``on`` stay strings);
* duplicate keys are reported at the second key;
* nesting depth and alias-expanded node count are capped *while* parsing, so a
  billion-laughs file fails after a few thousand events instead of expanding;
* composition is iterative, so deep nesting cannot exhaust the Python stack;
* every failure — PyYAML also raises ValueError, KeyError, RecursionError — becomes a
  ``yaml-syntax`` problem at ``file:line:col``.

Aliases produce shared node objects (a DAG); consumers walk at most
``max_nodes`` nodes because that is what the cap counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from shapecli.errors import Source, fail
from shapecli.untrusted import describe, hidden_character, visible

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_INT_DIGITS = 30

Scalar_t = str | int | float | bool | None


@dataclass(frozen=True, eq=False)
class Node:
    source: Source


@dataclass(frozen=True, eq=False)
class Scalar(Node):
    value: Scalar_t
    plain: bool = True  # written without quotes: only plain scalars are typed
    text: str = ""  # as written: `input: 0x20` is a shape to the user, hex 32 to YAML


@dataclass(frozen=True, eq=False)
class Seq(Node):
    items: tuple[Node, ...] = ()


@dataclass(frozen=True, eq=False)
class Map(Node):
    """A mapping with string keys, in file order; ``keys`` holds each key's node."""

    values: dict[str, Node] = field(default_factory=dict)
    keys: dict[str, Scalar] = field(default_factory=dict)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

#: Words YAML 1.1 read as booleans; YAML 1.2 (and shapecli) keeps them as strings.
YAML11_BOOLEANS = frozenset({
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
    "on", "On", "ON", "off", "Off", "OFF",
})  # fmt: skip


def yaml11_hint(value: object) -> str | None:
    """``YAML 1.2 reads `yes` as text: write true`` when a bool was expected and
    ``value`` is a word YAML 1.1 read as one (what a user of other YAML tools means by
    it), else None."""
    if not isinstance(value, str) or value not in YAML11_BOOLEANS:
        return None
    meant = "true" if value.lower() in ("y", "yes", "on") else "false"
    return f"YAML 1.2 reads `{value}` as text: write {meant}"


# Anything a spec has no business containing: C0 controls but tab/LF/CR, DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# The same in a scalar's value, once YAML's escapes (``"\e"``, ``"\x9b"``, ``"\0"``) are
# read: a line break in a file is always LF by then, so CR is refused there too.
_ESCAPED_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def resolve_plain(text: str, source: Source) -> Scalar_t:
    """The value of a plain (unquoted) scalar under YAML 1.2's core schema."""
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    for pattern, base in ((_INT, 10), (_OCT, 8), (_HEX, 16)):
        if pattern.fullmatch(text):
            if len(text) > MAX_INT_DIGITS:
                raise fail("yaml-syntax", f"integer {text[:20]}… is too large", source)
            return int(text[2:] if base != 10 else text, base)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


def decode(data: bytes, file: str) -> str:
    """UTF-8 (a BOM is fine) → text, or a located error."""
    if len(data) > MAX_BYTES:
        raise fail(
            "spec-invalid",
            f"file is {len(data):,} bytes; a spec may be at most {MAX_BYTES:,} bytes (1 MiB)",
            Source(file, 1, 1),
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise fail(
            "yaml-syntax",
            f"not valid UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8",
            Source(file, line, column),
        ) from None
    return text


def parse(text: str, file: str) -> Node | None:
    """Parse one YAML document into nodes; ``None`` for an empty document."""
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise fail(
            "yaml-syntax",
            f"control character U+{ord(bad.group()):04X} is not allowed in a spec",
            Source(file, line, column),
        )
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise fail("spec-invalid", "a spec may be at most 1 MiB", Source(file, 1, 1))
    composer = _Composer(file)
    try:
        return composer.compose(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        lines = text.splitlines()
        where = _within(file, lines, mark) if mark else composer.mark
        message = " ".join(str(part) for part in (e.context, e.problem) if part)
        hint = _unclosed(e) or _hint(e, lines, where.line)
        raise fail("yaml-syntax", message or "invalid YAML", where, hint=hint) from None
    except (
        yaml.YAMLError,
        ValueError,
        KeyError,
        AttributeError,
        TypeError,
        IndexError,
        RecursionError,
        MemoryError,
    ) as e:  # PyYAML raises all of these on odd input
        raise fail("yaml-syntax", f"invalid YAML: {e}", composer.mark) from None


def _within(file: str, lines: list[str], mark: yaml.Mark) -> Source:
    """Where ``mark`` is, as a place in the file: a mark just past the last line (the
    text ended inside a construct) is the end of the last line."""
    if lines and mark.line >= len(lines):
        return Source(file, len(lines), len(lines[-1]) + 1)
    return Source(file, mark.line + 1, mark.column + 1)


def _unclosed(e: yaml.MarkedYAMLError) -> str | None:
    """For a ``[…]`` or ``{…}`` that never closes, where it opened: the parser stops
    wherever it noticed, often lines later."""
    opened = e.context_mark
    if opened is None or "flow" not in str(e.context or ""):
        return None
    opener, closer = ("[", "]") if "sequence" in str(e.context) else ("{", "}")
    return (
        f"the {opener} at line {opened.line + 1}, column {opened.column + 1} is not "
        f"closed: close it with `{closer}`"
    )


def _check_escapes(value: str, source: Source) -> None:
    """Refuse a control character that an escape put in a scalar (the file's text was
    checked for them before parsing)."""
    bad = _ESCAPED_CONTROL.search(value)
    if bad:
        raise fail(
            "yaml-syntax",
            f"control character {describe(bad.group())} is not allowed in a spec, not even "
            "written as an escape",
            source,
        )


_ENTRY = re.compile(r"(?P<indent>\s*)- (?P<type>[A-Za-z_][\w.]*):")


def _entry_above(lines: list[str], number: int) -> tuple[re.Match[str], int] | None:
    """The ``- Type:`` line of the entry that line ``number`` belongs to, if any: the
    nearest line above that is not more deeply indented than an entry's options."""
    if not 0 < number <= len(lines):
        return None
    here = len(lines[number - 1]) - len(lines[number - 1].lstrip())
    for i in range(number - 2, -1, -1):
        if not lines[i].strip() or lines[i].lstrip().startswith("#"):
            continue
        match = _ENTRY.match(lines[i])
        if match:
            return match, i + 1
        if len(lines[i]) - len(lines[i].lstrip()) < here - 2:
            return None
    return None


def _hint(error: yaml.MarkedYAMLError, lines: list[str], number: int) -> str | None:
    """What usually causes PyYAML's more cryptic messages in a spec (``number`` is the
    1-based line the error points at)."""
    problem = str(error.problem or "")
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    if "\t" in line[: len(line) - len(line.lstrip())]:
        return "YAML indents with spaces, not tabs"
    above = _entry_above(lines, number)
    indent = len(line) - len(line.lstrip())
    if above is not None and ":" in line:
        entry, at = above
        column = len(entry.group("indent")) + 2
        if indent != column:
            key = line.strip().split(":")[0]
            return (
                f"check the indentation of `{key}:`: an entry's options (name, in, repeat …) "
                f"go in the same column as its type, `{entry.group('type')}:` on line {at} "
                f"(column {column + 1})"
            )
    if "mapping values are not allowed" in problem:
        return (
            "a layer with options needs a colon after its type (`- ReLU:` then "
            "`name: act` below it), and a value containing `: ` needs quotes"
        )
    if "expected '-' indicator" in problem or "expected <block end>" in problem:
        return "check the indentation: items of one list start in the same column"
    return None


@dataclass
class _Open:
    """A collection being composed: its children so far and its alias-expanded size."""

    node_source: Source
    is_map: bool
    anchor: str | None
    items: list[Node] = field(default_factory=list)
    size: int = 1


class _Composer:
    """Events → nodes, iteratively, with the caps of the module docstring."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[Node, int]] = {}
        self.total = 0
        self.mark: Source = Source(file, 1, 1)  # where the last event was: a failure's place

    def _source(self, event: yaml.Event) -> Source:
        mark = event.start_mark
        if mark is not None:
            self.mark = Source(self.file, mark.line + 1, mark.column + 1)
        return self.mark

    def compose(self, events: Iterator[yaml.Event]) -> Node | None:
        root: Node | None = None
        documents = 0
        for event in events:
            source = self._source(event)
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise fail(
                        "yaml-syntax",
                        "a spec is one YAML document; remove the second `---` and what follows",
                        source,
                    )
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in self.anchors:
                    raise fail(
                        "yaml-syntax",
                        f"alias *{event.anchor} refers to an anchor that is not defined "
                        "before it (or to the collection that contains it)",
                        source,
                    )
                node, size = self.anchors[event.anchor]
                root = self._add(node, size, source) or root
            elif isinstance(event, yaml.ScalarEvent):
                self._check_tag(event, source)
                _check_escapes(event.value, source)
                plain = bool(event.implicit and event.implicit[0] and not event.style)
                value = resolve_plain(event.value, source) if plain else event.value
                node = Scalar(source, value, plain, event.value)
                self._anchor(event.anchor, node, 1)
                root = self._add(node, 1, source) or root
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                self._check_tag(event, source)
                if len(self.stack) >= MAX_DEPTH:
                    raise fail("yaml-syntax", f"nesting deeper than {MAX_DEPTH} levels", source)
                is_map = isinstance(event, yaml.MappingStartEvent)
                self.stack.append(_Open(source, is_map, event.anchor))
                self._count(1, source)
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                done = self.stack.pop()
                node = self._finish(done)
                self._anchor(done.anchor, node, done.size)
                root = self._add(node, done.size, source, counted=True) or root
        return root

    def _check_tag(self, event: yaml.NodeEvent, source: Source) -> None:
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise fail(
                "yaml-syntax",
                f"explicit YAML tags are not allowed in a spec (found {tag!r}); "
                "write the plain value, quoted if it must be a string",
                source,
            )

    def _anchor(self, anchor: str | None, node: Node, size: int) -> None:
        if anchor is not None:
            self.anchors[anchor] = (node, size)

    def _count(self, size: int, source: Source) -> None:
        self.total += size
        if self.total > MAX_NODES:
            raise fail(
                "yaml-syntax",
                f"the document expands to more than {MAX_NODES:,} nodes "
                "(aliases are counted each time they are used)",
                source,
            )

    def _add(self, node: Node, size: int, source: Source, counted: bool = False) -> Node | None:
        """Attach a finished node to the open collection; return it if it is the root.

        Scalars and aliases are counted here; a collection was counted when it opened
        and its children as they arrived (``counted``).
        """
        if not counted:
            self._count(size, source)
        if not self.stack:
            return node
        parent = self.stack[-1]
        parent.items.append(node)
        parent.size += size
        return None

    def _finish(self, done: _Open) -> Node:
        if not done.is_map:
            return Seq(done.node_source, tuple(done.items))
        values: dict[str, Node] = {}
        keys: dict[str, Scalar] = {}
        for key, value in zip(done.items[::2], done.items[1::2], strict=True):
            if (
                not isinstance(key, Scalar)
                or isinstance(key.value, bool | float)
                or key.value is None
            ):
                raise fail("yaml-syntax", "mapping keys must be names", key.source)
            name = str(key.value)
            hidden = hidden_character(name)
            if hidden is not None:
                raise fail(
                    "spec-invalid",
                    f"a key is a name, and {describe(hidden)} (a control or format character, "
                    f"invisible where it is shown) is not allowed in one: `{visible(name)}`",
                    key.source,
                )
            if name in values:
                first = keys[name].source
                raise fail(
                    "yaml-syntax",
                    f"duplicate key {name!r} (first defined at line {first.line}, "
                    f"column {first.column})",
                    key.source,
                )
            values[name] = value
            keys[name] = key
        return Map(done.node_source, values, keys)
