"""``${{ expr }}`` expressions in workflow bindings: a small, safe subset of Python expressions.

Written by hand on purpose: the workflow file must not be able to run code, and the subset a binding
needs (names, attributes, indexing, arithmetic, comparisons, conditionals, a few pure functions) is small
enough to check node by node with the standard ``ast`` module. Anything else is refused with a message.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
OPENING = "${{"

# Bounds: an expression is evaluated at plan time, on the user's machine or a controller, so it must not be
# able to allocate gigabytes or run for minutes. Each limit is far above what a binding needs.
MAX_EXPRESSION_CHARS = 10_000
"""Longest expression text."""
MAX_DEPTH = 60
"""Deepest nesting of the expression's syntax tree."""
MAX_STEPS = 100_000
"""Most syntax nodes evaluated per expression."""
MAX_SECONDS = 1.0
"""Longest evaluation time per expression."""
MAX_INT_BITS = 4096
"""Largest integer (in bits, about 1,230 decimal digits)."""
MAX_ITEMS = 100_000
"""Longest list (a range, a repetition) or string an expression may build."""
MAX_FORMAT_WIDTH = 1000
"""Largest width or precision in a ``%`` format."""

_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _range(*args: Any) -> list[int]:
    bounds = range(*args)
    if len(bounds) > MAX_ITEMS:
        raise ExpressionError(f"range(...) would have {len(bounds)} items; at most {MAX_ITEMS} are allowed")
    return list(bounds)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "range": _range,
    "len": len,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
    "abs": abs,
    "round": round,
    "sum": sum,
}


class ExpressionError(ValueError):
    """An expression cannot be parsed or evaluated; the message says why."""


class _Attr(dict[str, Any]):
    """A mapping whose keys are also attributes (``params.n`` and ``params['n']``)."""


class _Budget:
    """Evaluation steps and time left for one expression."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionError(f"the expression takes more than {MAX_STEPS} evaluation steps")
        if self.steps % 256 == 0 and time.monotonic() > self.deadline:
            raise ExpressionError(f"the expression takes longer than {MAX_SECONDS:g}s to evaluate")


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


def _check_value(value: Any) -> Any:
    """Refuse results beyond the bounds (checked on every intermediate value)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"integer result too large (more than {MAX_INT_BITS} bits)")
    if _size_of(value) > MAX_ITEMS and not isinstance(value, dict):
        raise ExpressionError(f"result too long ({_size_of(value)} items; at most {MAX_ITEMS})")
    return value


def _check_binary(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse, before computing, the operations whose result would blow the bounds."""
    if isinstance(op, ast.Mult):
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list) and isinstance(count, int) and _size_of(seq) * max(count, 0) > MAX_ITEMS:
                raise ExpressionError(f"repetition would build {_size_of(seq) * count} items; at most {MAX_ITEMS}")
    if isinstance(op, ast.Pow) and isinstance(left, int | float) and isinstance(right, int | float):
        if (
            isinstance(right, int)
            and not isinstance(right, bool)
            and abs(right) > MAX_INT_BITS
            and abs(left) not in (0, 1)
        ):
            raise ExpressionError(f"exponent {right} too large (at most {MAX_INT_BITS})")
        if isinstance(left, int) and isinstance(right, int) and right > 0 and left.bit_length() * right > MAX_INT_BITS:
            raise ExpressionError(f"integer result too large (more than {MAX_INT_BITS} bits)")
    if isinstance(op, ast.Mod) and isinstance(left, str):
        for match in _FORMAT_SPEC.finditer(left):
            for number in match.groups():
                if number == "*":
                    raise ExpressionError("'*' widths are not supported in % formatting")
                if number is not None and int(number) > MAX_FORMAT_WIDTH:
                    raise ExpressionError(
                        f"% format width or precision {number} too large (at most {MAX_FORMAT_WIDTH})"
                    )


def _evaluate(node: ast.AST, scope: Mapping[str, Any], budget: _Budget) -> Any:
    budget.tick()
    return _check_value(_evaluate_node(node, scope, budget))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _evaluate_node(node: ast.AST, scope: Mapping[str, Any], budget: _Budget) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, scope, budget)
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(f"unsupported constant {_short(node.value)}")
        return node.value
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise ExpressionError(f"unknown name {node.id!r} (available: {', '.join(sorted(scope))})")
    if isinstance(node, ast.Attribute):
        base = _evaluate(node.value, scope, budget)
        if isinstance(base, Mapping):
            if node.attr not in base:
                raise ExpressionError(f"no field {node.attr!r} (available: {', '.join(sorted(map(str, base)))})")
            return base[node.attr]
        raise ExpressionError(f"cannot take .{node.attr} of {type(base).__name__} {_short(base)}")
    if isinstance(node, ast.Subscript):
        base = _evaluate(node.value, scope, budget)
        index = _evaluate(node.slice, scope, budget)
        try:
            return base[index]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ExpressionError(f"cannot index {_short(base)} with {_short(index)}: {exc}") from None
    if isinstance(node, ast.Slice):
        parts = [None if p is None else _evaluate(p, scope, budget) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, scope, budget), _evaluate(node.right, scope, budget)
        _check_binary(node.op, left, right)
        try:
            return _BINARY[type(node.op)](left, right)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, KeyError, MemoryError) as exc:
            raise ExpressionError(f"{ast.unparse(node)[:60]}: {exc}") from None
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, scope, budget)
        if isinstance(node.op, ast.Not):
            return not value
        if not isinstance(value, int | float) or isinstance(node.op, ast.Invert):
            raise ExpressionError(f"bad operand for unary {ast.unparse(node.op)}: {type(value).__name__}")
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, scope, budget) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, scope, budget)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, scope, budget)
            if type(op) not in _COMPARE:
                raise ExpressionError(f"unsupported comparison {ast.unparse(node)[:60]!r} (use ==, !=, <, in, ...)")
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise ExpressionError(f"cannot compare {_short(left)} with {_short(right)}: {exc}") from None
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _evaluate(node.body if _evaluate(node.test, scope, budget) else node.orelse, scope, budget)
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(e, scope, budget) for e in node.elts]
    if isinstance(node, ast.Dict):
        result: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise ExpressionError("'**' in a mapping is not supported in expressions")
            key = _evaluate(k, scope, budget)
            if not isinstance(key, str | int | float | bool | type(None)):
                raise ExpressionError(f"a mapping key must be a string or a number, got {type(key).__name__}")
            result[key] = _evaluate(v, scope, budget)
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ExpressionError("keyword arguments are not supported in expressions")
        args = [_evaluate(a, scope, budget) for a in node.args]
        try:
            return _FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise ExpressionError(f"{node.func.id}(): {exc}") from None
    raise ExpressionError(f"unsupported expression syntax: {ast.unparse(node)[:80]!r}")


def _tree_depth(tree: ast.AST) -> int:
    """Depth of a syntax tree, walked without recursion."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the text inside ``${{ }}``) in ``scope``, within the module's bounds."""
    text = expression.strip()
    shown = text if len(text) <= 60 else text[:57] + "..."
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression too long ({len(text)} characters; at most {MAX_EXPRESSION_CHARS})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {shown!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"invalid expression {shown!r}: nested too deeply") from None
    if _tree_depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"expression {shown!r} is nested more than {MAX_DEPTH} levels deep")
    return _evaluate(tree, {k: _wrap(v) for k, v in scope.items()}, _Budget())


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Attr({k: _wrap(v) for k, v in value.items()})
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Substitute expressions in a value (recursively through lists and mappings).

    A string that is exactly one ``${{ expr }}`` keeps the expression's type; expressions embedded in
    longer strings are formatted as text (lists and mappings as JSON).
    """
    if isinstance(value, str):
        check_closed(value)
        stripped = value.strip()
        whole = EXPRESSION.fullmatch(stripped)
        if whole and len(EXPRESSION.findall(stripped)) == 1:
            return _unwrap(evaluate(whole.group(1), scope))

        def _text(match: re.Match[str]) -> str:
            result = _unwrap(evaluate(match.group(1), scope))
            return result if isinstance(result, str) else json.dumps(result)

        return EXPRESSION.sub(_text, value)
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    return value


def check_closed(text: str) -> None:
    """Refuse a ``${{`` that is never closed by ``}}`` (it would otherwise pass through as literal text)."""
    rest = EXPRESSION.sub("", text)
    if OPENING in rest:
        at = rest.index(OPENING)
        raise ExpressionError(f"unclosed '${{{{' in {rest[at : at + 40]!r}: end the expression with '}}}}'")


def has_expression(value: Any) -> bool:
    """Whether ``value`` contains a ``${{ }}`` anywhere."""
    if isinstance(value, str):
        return bool(EXPRESSION.search(value))
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    return False
