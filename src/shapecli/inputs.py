"""Input declarations: ``2x20``, ``[2, 20]``, ``1x1024:long``, ``Bx3xHxW``.

The grammar is strict ASCII, checked with one regular expression per form, so
look-alikes (``2×20``, full-width digits, ``1_000``) are refused rather than guessed
at. A dimension is a positive integer or a name: a symbolic size, declared as such by
starting with a capital letter (``B``, ``H``, ``Seq``), so that a mistyped shape
(``-i bad``) is an error rather than a one-dimensional input of size ``bad``. The
element count must fit in int64: the meta device would happily describe a tensor whose
size overflows, and every later number would be wrong.

This module does not import torch; dtypes are names here and become torch dtypes only
in the dry run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

Dim = int | str

#: Accepted dtype spellings → canonical name (a ``torch`` attribute).
DTYPES: dict[str, str] = {
    "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16",
    "float64": "float64", "double": "float64",
    "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32",
    "int16": "int16", "int8": "int8", "uint8": "uint8",
    "bool": "bool",
}  # fmt: skip

#: The bytes one element of each dtype takes (``torch.empty(0, dtype=…).element_size()``).
ITEM_BYTES: dict[str, int] = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}  # fmt: skip

MAX_DIMS = 16
INT64_MAX = 2**63 - 1

#: A symbolic size: a capital letter first; no lowercase x anywhere (it separates sizes).
_NAME = r"[A-Z][A-Za-wyzA-Z0-9_]*"
_DIM = rf"(?:[1-9][0-9]{{0,18}}|{_NAME})"
_DTYPE = r"(?::(?P<dtype>[a-z0-9]+))?"
_X_FORM = re.compile(rf"(?P<dims>{_DIM}(?:x{_DIM})*){_DTYPE}")
_LIST_FORM = re.compile(rf"\[ *(?P<dims>{_DIM}(?: *, *{_DIM})*) *\]{_DTYPE}")


def grammar_pattern() -> str:
    """The whole grammar as one anchored regular expression that ECMA-262 (the dialect
    JSON Schema uses) reads the same way: the spec schema checks ``input`` with it."""
    forms = "|".join(f"(?:{form.pattern})" for form in (_X_FORM, _LIST_FORM))
    return "^(?:" + re.sub(r"\(\?P<\w+>", "(?:", forms) + ")$"


@dataclass(frozen=True)
class InputSpec:
    """One input tensor: its dimensions (ints or symbolic names), dtype name, and the
    name the spec reads it by (None: known by position only)."""

    dims: tuple[Dim, ...]
    dtype: str = "float32"
    name: str | None = None

    def __str__(self) -> str:
        text = "x".join(str(d) for d in self.dims)
        return text if self.dtype == "float32" else f"{text}:{self.dtype}"

    def named(self, name: str | None) -> InputSpec:
        return InputSpec(self.dims, self.dtype, name)


class InputError(ValueError):
    """A declaration that does not follow the grammar; the message says how to fix it."""


GRAMMAR_HELP = (
    "write dimensions joined by 'x' with an optional dtype, e.g. 2x20, 1x3x224x224, 1x1024:long"
)


def parse_input(text: str) -> InputSpec:
    """Parse one ``--input`` value (or a string ``input:`` in a spec); ``NAME=SHAPE``
    names the input it sets."""
    name, equals, shape = text.partition("=")
    if equals:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError(
                f"invalid input {text!r}: {name!r} is not an input name (write NAME=SHAPE, "
                "e.g. ids=1x128:long)"
            )
        return parse_input(shape).named(name)
    if not text.isascii():
        bad = next(c for c in text if not c.isascii())
        hint = " (use the letter x between dimensions)" if bad in "×✕✖" else ""
        raise InputError(f"invalid input {text!r}: {bad!r} is not allowed{hint}; {GRAMMAR_HELP}")
    match = _X_FORM.fullmatch(text) or _LIST_FORM.fullmatch(text)
    if not match:
        raise InputError(f"invalid input {text!r}: {_what_is_wrong(text)}{GRAMMAR_HELP}")
    separator = "x" if match.re is _X_FORM else ","
    dims = tuple(_dim(part.strip()) for part in match.group("dims").split(separator))
    return make_input(dims, match.group("dtype") or "float32", text)


def make_input(dims: tuple[Dim, ...], dtype: str, text: str) -> InputSpec:
    """Check dimensions and dtype (from any form) and build the :class:`InputSpec`."""
    if not dims:
        raise InputError(f"invalid input {text!r}: at least one dimension is needed")
    if len(dims) > MAX_DIMS:
        raise InputError(f"invalid input {text!r}: at most {MAX_DIMS} dimensions")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int | str):
            raise InputError(f"invalid input {text!r}: dimension {d!r} is not a size")
        if isinstance(d, int) and d < 1:
            raise InputError(f"invalid input {text!r}: dimension {d} must be at least 1")
        if isinstance(d, str) and d.isdigit():
            raise InputError(
                f'invalid input {text}: dimension "{d}" is quoted text; write it without quotes'
            )
        if isinstance(d, str) and not re.fullmatch(_NAME, d):
            raise InputError(f"invalid input {text!r}: {_not_a_name(d)}")
    numbers = [d for d in dims if isinstance(d, int)]
    if math.prod(numbers) > INT64_MAX:
        raise InputError(
            f"invalid input {text!r}: {math.prod(numbers):.3e} elements do not fit in int64"
        )
    if dtype not in DTYPES:
        raise InputError(
            f"invalid input {text!r}: unknown dtype {dtype!r}; one of {', '.join(DTYPES)}"
        )
    size = ITEM_BYTES[DTYPES[dtype]]
    if math.prod(numbers) * size > INT64_MAX:  # torch counts a tensor's bytes in int64 too
        raise InputError(
            f"invalid input {text!r}: {math.prod(numbers):.3e} elements of {DTYPES[dtype]} "
            f"({size} bytes each) are more bytes than int64 can count"
        )
    return InputSpec(dims, DTYPES[dtype])


def _what_is_wrong(text: str) -> str:
    """The first part of a rejected declaration that breaks the grammar, in words."""
    shape, _, dtype = text.partition(":")
    if dtype and dtype not in DTYPES:
        return f"unknown dtype {dtype!r} (one of {', '.join(DTYPES)}); "
    if shape.startswith("[") != shape.endswith("]"):
        return "the list is not closed: write [2, 20]; "
    if "X" in shape and re.fullmatch(r"[0-9X]+", shape):
        return "use a lowercase x between dimensions (2x20); "
    listed = shape.startswith("[") and shape.endswith("]")
    if not listed and any(c.isspace() for c in shape):
        return "spaces are not allowed (write 2x20); "
    parts = [p.strip() for p in shape[1:-1].split(",")] if listed else shape.split("x")
    for part in parts:
        if not part:
            return "a dimension is missing (empty between separators or at an end); "
        if re.fullmatch(r"-[0-9]+", part):
            return f"dimension {part} is negative; "
        if re.fullmatch(r"0+", part):
            return "a dimension of 0 has no elements; sizes start at 1; "
        if re.fullmatch(r"0[0-9]+", part):
            return f"dimension {part} has a leading zero; "
        if re.fullmatch(r"[0-9]{20,}", part):
            return f"dimension {part[:12]}… is too large; "
        if not re.fullmatch(_DIM, part):
            return f"{_not_a_name(part)}; "
    return ""


def _not_a_name(part: str) -> str:
    """Why ``part`` is neither a size nor a symbolic size's name."""
    if re.fullmatch(r"[a-z][A-Za-z0-9_]*", part) and "x" not in part:
        return (
            f"{part!r} is not a size; a symbolic size is a name that starts with a "
            f"capital letter, e.g. {part[0].upper()}{part[1:]}"
        )
    return f"{part!r} is neither a size nor a name (a symbolic size starts with a capital letter)"


def _dim(text: str) -> Dim:
    return int(text) if text[0].isdigit() else text


def merge_inputs(
    declared: tuple[InputSpec, ...], given: tuple[InputSpec, ...]
) -> tuple[InputSpec, ...]:
    """The inputs to dry-run with: the spec's ``input:``, overridden from the command line.

    ``NAME=SHAPE`` replaces the declared input of that name; plain ``SHAPE`` values give
    every declared input in order (keeping their names): a few of them would leave the
    rest as declared, silently out of step (a new sequence length, the old mask), so
    changing only some is done by name. A spec whose inputs have no names takes as many
    plain shapes as it declares (any number when it declares none): its model's forward
    takes that many tensors, and a different count would surface as a layer's shape
    mismatch rather than as the command line's mistake it is.
    """
    if not given:
        return declared
    names = [d.name for d in declared if d.name is not None]
    named = [g for g in given if g.name is not None]
    plain = [g for g in given if g.name is None]
    if not names and named:
        raise InputError(
            f"input {named[0].name}={named[0]}: this spec's inputs have no names; give "
            "their shapes in order, without NAME="
        )
    too_few = not names and len(plain) < len(declared)  # named: said below, by name
    if declared and (len(plain) > len(declared) or too_few):
        listed = ", ".join(names) or f"its `input:` is {', '.join(map(str, declared))}"
        raise InputError(
            f"the model reads {_count(len(declared), 'input')} ({listed}); "
            f"--input gave {_count(len(plain), 'shape')}"
        )
    if not names:
        return tuple(given)
    merged = list(declared)
    for i, shape in enumerate(plain):
        merged[i] = shape.named(declared[i].name)
    filled = {declared[i].name for i in range(len(plain))}
    for shape in named:
        if shape.name not in names:
            from shapecli.errors import did_you_mean

            near = did_you_mean(shape.name or "", names)
            raise InputError(
                f"input {shape.name}={shape}: the model has no input `{shape.name}`{near}; "
                f"its inputs: {', '.join(names)}"
            )
        if shape.name in filled:
            raise InputError(
                f"input `{shape.name}` is given twice: by position and as {shape.name}=…"
            )
        merged[names.index(shape.name)] = shape
    left = [n for n in names if n not in filled and n not in {s.name for s in named}]
    if plain and left:
        raise InputError(
            f"--input gave no shape for {', '.join(left)}: with shapes in order, give one "
            f"for every input ({', '.join(names)}), or change inputs by name only "
            f"(--input {declared[0].name}={plain[0]})"
        )
    return tuple(merged)


def symbols_in(inputs: tuple[InputSpec, ...]) -> tuple[str, ...]:
    """The names of the symbolic sizes in ``inputs``, each once, in the order written."""
    return tuple(dict.fromkeys(d for spec in inputs for d in spec.dims if isinstance(d, str)))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def input_names(inputs: tuple[InputSpec, ...]) -> tuple[str, ...]:
    """Each input's name: its own, or ``input`` (one input) / ``input0``… (several)."""
    if len(inputs) == 1:
        return (inputs[0].name or "input",)
    return tuple(spec.name or f"input{i}" for i, spec in enumerate(inputs))
