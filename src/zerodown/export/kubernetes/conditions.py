"""zerodown's analysis conditions in Argo Rollouts' expression language (expr-lang).

The grammar is a subset of Argo's, so a condition is re-printed from its parsed tree with every
sub-expression in parentheses; only `result` changes its spelling: a Prometheus query gives Argo a
vector, so it reads `result[0]` where zerodown took the first sample.
"""

from __future__ import annotations

from decimal import Decimal

from zerodown.core.analysis import expr

_OPS = {"and": "&&", "or": "||"}


def names(condition: str) -> set[str]:
    return expr.names(expr.parse(condition))


def to_argo(condition: str, *, result: str) -> str:
    return _print(expr.parse(condition), result, top=True)


def _print(node: expr.Node, result: str, *, top: bool = False) -> str:
    if isinstance(node, expr.Num):
        # plain decimals: no exponent for Argo's parser to disagree about
        return format(Decimal(repr(node.value)), "f").removesuffix(".0")
    if isinstance(node, expr.Bool):
        return "true" if node.value else "false"
    if isinstance(node, expr.Name):
        if node.name != "result":
            raise ValueError(f"{node.name!r} has no counterpart in Argo Rollouts")
        return result
    if isinstance(node, expr.Unary):
        op = "!" if node.op == "not" else "-"
        return f"{op}{_print(node.operand, result)}"
    text = f"{_print(node.left, result)} {_OPS.get(node.op, node.op)} {_print(node.right, result)}"
    return text if top else f"({text})"
