"""``${expr}`` substitution: arithmetic over params, and nothing else, ever.

An expression may use names, integer and float literals, ``+ - * / // %``, unary
minus, parentheses, ``min(...)`` and ``max(...)``, and — for ``if:`` — comparisons
(``== != < <= > >=``), ``and``, ``or`` and ``not``. It is parsed with :mod:`ast` and
compiled by walking a whitelist of node types; anything else (attributes, calls to
other names, subscripts, ``**``, lambdas) is refused before any value is computed. The
same language, compiled once (:func:`compile_expression`), evaluates the formulas and
constraints of symbolic sizes (``(H - 1)//2 + 1``, ``31 <= H <= 34``) at many sizes.
Results are capped at the int64 range, so ``${9999999 * 9999999 * …}`` cannot build
giant numbers.

A string that is exactly one ``${…}`` keeps the expression's type (``"${d * 4}"`` is
an int); ``${…}`` inside a longer string is interpolated as text.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping

from shapecli.spec.yaml_nodes import yaml11_hint

Number = int | float
Scalar = int | float | bool | str | None
#: A param's value: a scalar, or a list of scalars (``kernel: [1, 7]``), kept as a tuple.
Value = Scalar | tuple[Scalar, ...]

MAX_EXPRESSION_LENGTH = 200
INT64_MAX = 2**63 - 1

_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {"min": min, "max": max}
_COMPARE: dict[type[ast.cmpop], Callable[[Number, Number], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class ExpressionError(ValueError):
    """An expression that is not allowed or cannot be evaluated; the message says why."""


def substitute(text: str, scope: Mapping[str, Value]) -> Value:
    """Replace every ``${expr}`` in ``text``; a whole-string expression keeps its type."""
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        return evaluate(whole.group(1), scope)
    if "${" in _PLACEHOLDER.sub("", text):
        raise ExpressionError(
            "unclosed or nested `${`: write ${expression} with one pair of braces"
        )

    def one(match: re.Match[str]) -> str:
        value = evaluate(match.group(1), scope)
        if isinstance(value, tuple):
            raise ExpressionError(
                f"`{match.group(1).strip()}` is a list; a list is used whole, as the only "
                "thing in its string"
            )
        return str(value).lower() if isinstance(value, bool) else str(value)

    return _PLACEHOLDER.sub(one, text)


def evaluate(expression: str, scope: Mapping[str, Value]) -> Value:
    """Evaluate one expression (the part between ``${`` and ``}``) in ``scope``."""
    return compile_expression(expression)(scope)


#: An expression checked and ready to evaluate in any scope, as often as needed.
Compiled = Callable[[Mapping[str, Value]], Value]


def compile_expression(
    expression: str, limit: int | None = MAX_EXPRESSION_LENGTH, conditional: bool = False
) -> Compiled:
    """``expression`` parsed and checked once, as a function of a scope: what a
    formula over sizes needs, evaluated at hundreds of sizes. Anything the grammar
    does not allow is refused here, before any value is computed. ``limit`` caps the
    length (None: shapecli's own text, e.g. a formula torch derived); ``conditional``
    allows ``a if test else b``, which a formula over sizes may need (a pool with
    ``ceil_mode`` gives one size for even H and another for odd) and ``${…}`` never."""
    source = expression.strip()
    if not source:
        raise ExpressionError("empty expression `${}`")
    if limit is not None and len(source) > limit:
        raise ExpressionError(f"expression longer than {limit} characters")
    if not source.isascii():
        raise ExpressionError("expressions are ASCII: names, numbers, + - * / // % ( ) min max")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError):
        raise ExpressionError(f"`{source}` is not a valid expression") from None
    except RecursionError:
        raise ExpressionError(f"`{source[:40]}…` is nested too deeply") from None
    if not conditional:
        for node in ast.walk(tree):
            if isinstance(node, ast.IfExp):
                raise ExpressionError(_not_allowed(node))
    return _compile(tree.body)


def names_in(expression: str) -> set[str]:
    """The names an expression reads (the functions it calls not among them); none for
    text that is not an expression."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


class UndefinedError(ExpressionError):
    """An expression with no value at these values (a division by zero)."""


def _compile(node: ast.expr) -> Compiled:
    """``node`` as a function of the scope, every part checked now."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        constant = node.value
        value: Value = constant if isinstance(constant, bool) else _checked(constant)
        return lambda scope: value
    if isinstance(node, ast.Name):
        return _name(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _number(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda scope: _checked(-operand(scope))
        return operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and node.args
        and not node.keywords
    ):
        function, args = _FUNCTIONS[node.func.id], [_number(a) for a in node.args]
        return lambda scope: _checked(function(*(a(scope) for a in args)))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        return _comparison(node)
    if isinstance(node, ast.BoolOp):
        values = [_bool(v) for v in node.values]
        combine = all if isinstance(node.op, ast.And) else any
        return lambda scope: combine([v(scope) for v in values])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand_bool = _bool(node.operand)
        return lambda scope: not operand_bool(scope)
    if isinstance(node, ast.IfExp):  # refused first where not allowed
        test, then, otherwise = _bool(node.test), _compile(node.body), _compile(node.orelse)
        return lambda scope: then(scope) if test(scope) else otherwise(scope)
    raise ExpressionError(_not_allowed(node))


def _not_allowed(node: ast.expr) -> str:
    return (
        f"`{ast.unparse(node)}` is not allowed: expressions may use names, numbers, "
        "+ - * / // % ( ), min() and max(), comparisons, and, or, not"
    )


def _name(name: str) -> Compiled:
    def look_up(scope: Mapping[str, Value]) -> Value:
        if name not in scope:
            known = ", ".join(sorted(scope)) or "none are defined"
            raise ExpressionError(f"unknown name `{name}` (params: {known})")
        return scope[name]

    return look_up


def _binary(node: ast.BinOp) -> Compiled:
    left, right = _number(node.left), _number(node.right)
    op = _BINARY[type(node.op)]
    divides = isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod)

    def apply(scope: Mapping[str, Value]) -> Value:
        a, b = left(scope), right(scope)
        if divides and b == 0:
            raise UndefinedError("division by zero")
        return _checked(op(a, b))

    return apply


def _comparison(node: ast.Compare) -> Compiled:
    first = _number(node.left)
    rest = [
        (_COMPARE[type(op)], _number(right))
        for op, right in zip(node.ops, node.comparators, strict=True)
    ]

    def compare(scope: Mapping[str, Value]) -> Value:
        left = first(scope)
        for test, right_of in rest:
            right = right_of(scope)
            if not test(left, right):
                return False
            left = right
        return True

    return compare


def _bool(node: ast.expr) -> Callable[[Mapping[str, Value]], bool]:
    inner = _compile(node)

    def as_bool(scope: Mapping[str, Value]) -> bool:
        value = inner(scope)
        if not isinstance(value, bool):
            hint = yaml11_hint(value)
            raise ExpressionError(
                f"`{ast.unparse(node)}` is {value!r}, not true or false"
                + (f" ({hint})" if hint else "")
            )
        return value

    return as_bool


def _number(node: ast.expr) -> Callable[[Mapping[str, Value]], Number]:
    inner = _compile(node)
    if _numeric(node):
        return inner  # type: ignore[return-value]  # a number by construction

    def as_number(scope: Mapping[str, Value]) -> Number:
        value = inner(scope)
        if type(value) is int:  # the common case, first
            return value
        if isinstance(value, tuple):
            raise ExpressionError(f"`{ast.unparse(node)}` is a list, not a number")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExpressionError(f"`{ast.unparse(node)}` is {value!r}, not a number")
        return value

    return as_number


def _numeric(node: ast.expr) -> bool:
    """Whether ``node`` compiles to something that always gives a number (its parts are
    checked where they are compiled), so the check need not be made again."""
    constant = isinstance(node, ast.Constant) and type(node.value) in (int, float)
    arithmetic = isinstance(node, ast.BinOp | ast.Call) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd)
    )
    if isinstance(node, ast.IfExp):
        return _numeric(node.body) and _numeric(node.orelse)
    return constant or arithmetic


def _checked(value: Number) -> Number:
    if type(value) is int and -INT64_MAX <= value <= INT64_MAX:
        return value  # the common case, first
    if isinstance(value, int) and abs(value) > INT64_MAX:
        raise ExpressionError("result does not fit in 64 bits")
    if isinstance(value, float) and math.isnan(value):  # from inf - inf
        raise ExpressionError("result is not a number")
    return value
