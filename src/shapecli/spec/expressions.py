"""``${expr}`` substitution: arithmetic over params, and nothing else, ever.

An expression may use names, integer and float literals, ``+ - * / // %``, unary
minus, parentheses, ``min(...)`` and ``max(...)``, and — for ``if:`` — comparisons
(``== != < <= > >=``), ``and``, ``or`` and ``not``. It is parsed with :mod:`ast` and
evaluated by walking a whitelist of node types; anything else (attributes, calls to
other names, subscripts, ``**``, comparisons, lambdas) is refused before any value is
computed. Results are capped at the int64 range, so ``${9999999 * 9999999 * …}``
cannot build giant numbers.

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


def has_placeholder(text: str) -> bool:
    return "${" in text


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
    source = expression.strip()
    if not source:
        raise ExpressionError("empty expression `${}`")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    if not source.isascii():
        raise ExpressionError("expressions are ASCII: names, numbers, + - * / // % ( ) min max")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise ExpressionError(f"`{source}` is not a valid expression") from None
    return _Evaluator(scope).visit(tree.body)


class _Evaluator:
    def __init__(self, scope: Mapping[str, Value]) -> None:
        self.scope = scope

    def visit(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            number: Number = node.value  # type: ignore[assignment]
            return _checked(number)
        if isinstance(node, ast.Name):
            if node.id not in self.scope:
                known = ", ".join(sorted(self.scope)) or "none are defined"
                raise ExpressionError(f"unknown name `{node.id}` (params: {known})")
            return self.scope[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is bool:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self._number(node.operand)
            return _checked(-operand if isinstance(node.op, ast.USub) else operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._number(node.left), self._number(node.right)
            if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
                raise ExpressionError("division by zero")
            return _checked(_BINARY[type(node.op)](left, right))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and node.args
            and not node.keywords
        ):
            return _checked(_FUNCTIONS[node.func.id](*(self._number(a) for a in node.args)))
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = self._number(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._number(right_node)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            values = [self._bool(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self._bool(node.operand)
        snippet = ast.unparse(node)
        raise ExpressionError(
            f"`{snippet}` is not allowed: expressions may use names, numbers, "
            "+ - * / // % ( ), min() and max(), comparisons, and, or, not"
        )

    def _bool(self, node: ast.expr) -> bool:
        value = self.visit(node)
        if not isinstance(value, bool):
            hint = yaml11_hint(value)
            raise ExpressionError(
                f"`{ast.unparse(node)}` is {value!r}, not true or false"
                + (f" ({hint})" if hint else "")
            )
        return value

    def _number(self, node: ast.expr) -> Number:
        value = self.visit(node)
        if isinstance(value, tuple):
            raise ExpressionError(f"`{ast.unparse(node)}` is a list, not a number")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExpressionError(f"`{ast.unparse(node)}` is {value!r}, not a number")
        return value


def _checked(value: Number) -> Number:
    if isinstance(value, int) and abs(value) > INT64_MAX:
        raise ExpressionError("result does not fit in 64 bits")
    if isinstance(value, float) and math.isnan(value):  # from inf - inf
        raise ExpressionError("result is not a number")
    return value
