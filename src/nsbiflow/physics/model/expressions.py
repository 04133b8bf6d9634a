"""Coefficients of the statistical model: safe arithmetic expressions of the parameters of interest.

A coefficient such as ``mu - sqrt(mu)`` or ``1 - sqrt(mu)`` is parsed once with the standard ``ast`` module
and checked node by node: numbers, parameter names, ``+ - * / **``, unary minus and the functions ``sqrt``,
``exp``, ``log`` and ``abs``. Nothing else is accepted, so a model file cannot run code. ``sqrt`` and ``log``
clamp their argument at a tiny positive floor, so a coefficient such as ``sqrt(mu)`` has a finite value and
gradient at (and below) the bound ``mu = 0``.

Why not the engine's ``${{ }}`` evaluator (``nsbiflow.engine.expressions``): physics must not import the
engine (layering, DESIGN.md), and a coefficient is evaluated differently -- on torch tensors, thousands of
times per fit, with gradients flowing through it -- so it compiles to a closure over tensors instead of
interpreting a scope of plain values. The two share only the idea (an ``ast`` whitelist).
"""

from __future__ import annotations

import ast
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_FUNCTIONS = ("sqrt", "exp", "log", "abs")
_MAX_LENGTH = 2000
_MAX_NODES = 500


class ExpressionError(ValueError):
    """An expression is not in the allowed subset; the message says what is wrong."""


_SQRT_FLOOR = 1e-10  # sqrt(mu) at the bound mu = 0: finite slope (5e4) instead of an infinite gradient
_LOG_FLOOR = 1e-300


def _call(name: str, value: Any) -> Any:
    # torch is not imported here: validating a model (at every plan) must not cost its import (seconds); a
    # tensor can only be passed in once someone has imported it
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if name == "sqrt":
            return torch.sqrt(torch.clamp(value, min=_SQRT_FLOOR))
        if name == "log":
            return torch.log(torch.clamp(value, min=_LOG_FLOOR))
        return getattr(torch, name)(value)
    if name == "sqrt":
        return math.sqrt(max(float(value), _SQRT_FLOOR))
    if name == "log":
        return math.log(max(float(value), _LOG_FLOOR))
    return getattr(math, "fabs" if name == "abs" else name)(value)


Compiled = Callable[[Mapping[str, Any]], Any]


def _compile(node: ast.AST, names: set[str]) -> Compiled:
    if isinstance(node, ast.Expression):
        return _compile(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        value = float(node.value)
        return lambda scope: value
    if isinstance(node, ast.Name):
        name = node.id
        names.add(name)
        return lambda scope: scope[name]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _compile(node.operand, names)
        if isinstance(node.op, ast.USub):
            return lambda scope: -inner(scope)
        return inner
    if isinstance(node, ast.BinOp):
        left, right = _compile(node.left, names), _compile(node.right, names)
        if isinstance(node.op, ast.Add):
            return lambda scope: left(scope) + right(scope)
        if isinstance(node.op, ast.Sub):
            return lambda scope: left(scope) - right(scope)
        if isinstance(node.op, ast.Mult):
            return lambda scope: left(scope) * right(scope)
        if isinstance(node.op, ast.Div):
            return lambda scope: left(scope) / right(scope)
        if isinstance(node.op, ast.Pow):
            return lambda scope: left(scope) ** right(scope)
        raise ExpressionError(f"operator {type(node.op).__name__} is not allowed (use + - * / **)")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else "this call"
            raise ExpressionError(f"function {shown!r} is not allowed (allowed: {', '.join(_FUNCTIONS)})")
        if len(node.args) != 1 or node.keywords:
            raise ExpressionError(f"{node.func.id}() takes exactly one argument")
        function, argument = node.func.id, _compile(node.args[0], names)
        return lambda scope: _call(function, argument(scope))
    raise ExpressionError(f"{type(node).__name__} is not allowed in a coefficient (numbers, parameters, + - * / **)")


@dataclass(frozen=True)
class Expression:
    """A parsed coefficient: its text, the parameter names it reads and the compiled closure."""

    text: str
    names: frozenset[str]
    function: Compiled

    def __call__(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate with ``scope`` (parameter name -> float or torch tensor)."""
        return self.function(scope)


def parse(text: str | float | int) -> Expression:
    """Parse a coefficient; ``ExpressionError`` names what is not allowed."""
    source = str(text).strip()
    if not source:
        raise ExpressionError("empty expression")
    if len(source) > _MAX_LENGTH:
        raise ExpressionError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"cannot parse {source!r}: {error.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise ExpressionError(f"expression has more than {_MAX_NODES} parts")
    names: set[str] = set()
    function = _compile(tree, names)
    return Expression(source, frozenset(names), function)
