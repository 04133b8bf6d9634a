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
from collections.abc import Callable, Mapping
from typing import Any

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)

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
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "range": lambda *a: list(range(*a)),
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


def _evaluate(node: ast.AST, scope: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, scope)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise ExpressionError(f"unknown name {node.id!r} (available: {', '.join(sorted(scope))})")
    if isinstance(node, ast.Attribute):
        base = _evaluate(node.value, scope)
        if isinstance(base, Mapping):
            if node.attr not in base:
                raise ExpressionError(f"no field {node.attr!r} (available: {', '.join(sorted(map(str, base)))})")
            return base[node.attr]
        raise ExpressionError(f"cannot take .{node.attr} of {type(base).__name__} {base!r}")
    if isinstance(node, ast.Subscript):
        base = _evaluate(node.value, scope)
        index = _evaluate(node.slice, scope)
        try:
            return base[index]
        except (KeyError, IndexError, TypeError) as exc:
            raise ExpressionError(f"cannot index {base!r} with {index!r}: {exc}") from None
    if isinstance(node, ast.Slice):
        parts = [None if p is None else _evaluate(p, scope) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, scope), _evaluate(node.right, scope)
        try:
            return _BINARY[type(node.op)](left, right)
        except (TypeError, ZeroDivisionError, OverflowError) as exc:
            raise ExpressionError(str(exc)) from None
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, scope)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(node.op, ast.Not):
            return not value
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, scope) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _evaluate(node.body if _evaluate(node.test, scope) else node.orelse, scope)
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(e, scope) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_evaluate(k, scope): _evaluate(v, scope) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ExpressionError("keyword arguments are not supported in expressions")
        args = [_evaluate(a, scope) for a in node.args]
        try:
            return _FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{node.func.id}(): {exc}") from None
    raise ExpressionError(f"unsupported expression syntax: {ast.unparse(node)!r}")


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the text inside ``${{ }}``) in ``scope``."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {expression.strip()!r}: {exc.msg}") from None
    return _evaluate(tree, {k: _wrap(v) for k, v in scope.items()})


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
        whole = EXPRESSION.fullmatch(value.strip())
        if whole:
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


def has_expression(value: Any) -> bool:
    """Whether ``value`` contains a ``${{ }}`` anywhere."""
    if isinstance(value, str):
        return bool(EXPRESSION.search(value))
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    return False
