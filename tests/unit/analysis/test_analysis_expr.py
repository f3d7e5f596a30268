"""The condition language: table-driven, values and errors with their column."""

from __future__ import annotations

import pytest

from zerodown.core.analysis.expr import ExprError, check, evaluate, evaluate_condition, names, parse

ENV = {"result": 0.1, "baseline": 0.08, "samples": 120.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("result > 0.05", True),
        ("result < 0.05", False),
        ("result >= 0.1", True),
        ("result <= 0.09999", False),
        ("result == 0.1", True),
        ("result != 0.1", False),
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("12 / 3 / 2", 2.0),
        ("-result", -0.1),
        ("--2", 2.0),
        ("+2", 2.0),
        ("1e3", 1000.0),
        (".5 + 1.", 1.5),
        ("result < baseline * 1.2", False),
        ("result < baseline * 1.3", True),
        ("result > 0.05 and samples >= 50", True),
        ("result > 0.05 and samples >= 500", False),
        ("result > 0.5 or samples >= 50", True),
        ("result > 0.5 || samples < 50", False),
        ("result > 0.05 && samples > 100", True),
        ("not result > 0.05", False),
        ("!(result > 0.05)", False),
        ("not not true", True),
        ("true and false or true", True),  # and binds tighter than or
        ("true or false and false", True),
        ("false == false", True),
        ("  result\t>\n0  ", True),
    ],
)
def test_evaluates(text: str, expected: float | bool) -> None:
    value = evaluate(text, ENV)
    assert type(value) is type(expected)
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", 1, "empty"),
        ("result >", 9, "ends too early"),
        ("result >> 2", 9, "unexpected '>'"),
        ("result > 0.05 )", 15, "unexpected ')'"),
        ("(result > 1", 12, "expected ')'"),
        ("result $ 2", 8, "unexpected character '$'"),
        ("0 < result < 1", 12, "chained"),
        ("result = 1", 8, "unexpected character '='"),
        ("result.__class__", 7, "unexpected character '.'"),
        ("__import__('os')", 12, "unexpected character"),
        ("result > 1 2", 12, "unexpected '2'"),
        ("and result", 1, "unexpected 'and'"),
    ],
)
def test_parse_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExprError) as caught:
        parse(text)
    assert caught.value.column == column
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("result / 0 > 1", 8, "division by zero"),
        ("result + true > 1", 8, "needs numbers"),
        ("result and true", 8, "true/false"),
        ("not result", 1, "true/false"),
        ("-true", 1, "needs numbers"),
        ("missing > 1", 1, "no value"),
        ("result == true", 8, "compares a number"),
    ],
)
def test_evaluation_errors(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExprError) as caught:
        evaluate(text, ENV)
    assert caught.value.column == column
    assert fragment in str(caught.value)


def test_short_circuit_skips_the_other_side() -> None:
    # baseline is absent, but the left side already decides
    assert evaluate_condition("result > 0 or baseline > 1", {"result": 1.0}) is True
    assert evaluate_condition("result < 0 and baseline > 1", {"result": 1.0}) is False


def test_nan_is_an_error_not_a_silent_false() -> None:
    with pytest.raises(ExprError, match="NaN"):
        evaluate("result > 1", {"result": float("nan")})


def test_condition_must_be_boolean() -> None:
    with pytest.raises(ExprError, match="true or false"):
        evaluate_condition("result * 2", ENV)


def test_names_and_check() -> None:
    assert names(parse("result < baseline * 2 and samples > 1")) == {
        "result",
        "baseline",
        "samples",
    }
    with pytest.raises(ExprError) as caught:
        check("result > 0 and reslt < 1", ["result"])
    assert caught.value.column == 16
    assert "unknown name 'reslt'" in str(caught.value)
