"""The expression evaluator is bounded and total: every hostile expression is a quick ExpressionError."""

from __future__ import annotations

import time

import pytest

from nsbiflow.engine.expressions import ExpressionError, evaluate, render

HOSTILE = [
    "9**9**9",
    "10**100000",
    "2**-100000000",
    "'a'*10**10",
    "[0]*10**9",
    "10**9*'a'",
    "'%.2000000000f' % 1.0",
    "'%2000000000d' % 1",
    "'%*d' % [1000000000, 1]",
    "range(10**9)",
    "range(0, 10**18, 10**6)",
    "[1] < 'a'",
    "-'a'",
    "+[1]",
    "'abc'[::0]",
    "not_a_name",
    "{[1]: 2}",
    "len(5)",
    "int('9' * 5000)",
    "round(1.0, 'x')",
    "1 < 'a'",
    "'a' in 5",
    "-" * 20000 + "1",
    "(" * 300 + "1" + ")" * 300,
    "[" * 300 + "]" * 300,
    "1 if " * 5000 + "1" + " else 2" * 5000,
    "+".join(["'" + "x" * 50000 + "'"] * 30),
    "sum(range(100000)) * 10**4000",
    "str(10**4000)",
]


@pytest.mark.parametrize("expression", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_expression_is_a_quick_expression_error(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError) as info:
        evaluate(expression, {"params": {"n": 3}})
    assert time.monotonic() - started < 2
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_ordinary_expressions_still_work() -> None:
    scope = {"params": {"n": 3, "name": "x", "xs": [1, 2, 3]}}
    assert evaluate("params.n ** 2 + 1", scope) == 10
    assert evaluate("'%.3f' % 1.5", scope) == "1.500"
    assert evaluate("range(params.n)", scope) == [0, 1, 2]
    assert evaluate("params.name * 3", scope) == "xxx"
    assert evaluate("params.xs[::-1]", scope) == [3, 2, 1]
    assert evaluate("2 ** 0.5", scope) == pytest.approx(1.41421356)
    assert evaluate("[0] * 1000", scope) == [0] * 1000


@pytest.mark.parametrize("text", ["${{ params.n ", "prefix ${{ params.n }} and ${{ unclosed", "${{"])
def test_unclosed_expression_is_refused(text: str) -> None:
    with pytest.raises(ExpressionError, match="unclosed"):
        render(text, {"params": {"n": 1}})
