"""A small, safe expression language for analysis conditions.

    result > 0.05
    result < baseline * 1.2 and samples >= 50
    not (result >= 0.5 or result < 0)

Numbers, names (`result`, `baseline`, `samples`, ...), `true` / `false`, arithmetic (+ - * /,
unary -), comparisons (< <= > >= == !=), boolean `and` / `or` / `not` (also `&&`, `||`, `!`, as in
Argo Rollouts' conditions) and parentheses. Nothing else: no attribute access, no calls, no
Python `eval`, so a spec file cannot run code inside the controller.

Grammar (lowest precedence first):

    or_expr  := and_expr (("or" | "||") and_expr)*
    and_expr := not_expr (("and" | "&&") not_expr)*
    not_expr := ("not" | "!") not_expr | compare
    compare  := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum      := product (("+" | "-") product)*
    product  := unary (("*" | "/") unary)*
    unary    := "-" unary | atom
    atom     := NUMBER | NAME | "true" | "false" | "(" or_expr ")"

Errors carry the 1-based column of the offending token, so the spec loader can point at it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Value = float | bool


class ExprError(ValueError):
    """A condition that cannot be parsed or evaluated; `column` is 1-based (0 = unknown)."""

    def __init__(self, message: str, column: int = 0) -> None:
        self.column = column
        super().__init__(f"{message} (at column {column})" if column else message)


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    column: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|&&|\|\||[-+*/()<>!])
    """,
    re.VERBOSE,
)

_WORD_OPS = {"and": "and", "or": "or", "not": "not"}
_SYMBOL_OPS = {"&&": "and", "||": "or", "!": "not"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos]!r}", pos + 1)
        kind = match.lastgroup or ""
        word = match.group()
        if kind == "name" and word in _WORD_OPS:
            tokens.append(Token("op", _WORD_OPS[word], pos + 1))
        elif kind == "op" and word in _SYMBOL_OPS:
            tokens.append(Token("op", _SYMBOL_OPS[word], pos + 1))
        elif kind != "space":
            tokens.append(Token(kind, word, pos + 1))
        pos = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# ---------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class Num:
    value: float
    column: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    column: int


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    column: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node
    column: int


Node = Num | Bool | Name | Unary | Binary

_COMPARE = ("<", "<=", ">", ">=", "==", "!=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in ops

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ExprError("the condition is empty", 1)
        node = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise ExprError(f"unexpected {token.text!r}", token.column)
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at_op("or"):
            op = self.take()
            node = Binary("or", node, self.and_expr(), op.column)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at_op("and"):
            op = self.take()
            node = Binary("and", node, self.not_expr(), op.column)
        return node

    def not_expr(self) -> Node:
        if self.at_op("not"):
            op = self.take()
            return Unary("not", self.not_expr(), op.column)
        return self.compare()

    def compare(self) -> Node:
        node = self.sum()
        if self.at_op(*_COMPARE):
            op = self.take()
            node = Binary(op.text, node, self.sum(), op.column)
            if self.at_op(*_COMPARE):
                # `a < b < c` reads well but means different things in different languages
                raise ExprError(
                    "comparisons cannot be chained; join them with 'and'", self.peek().column
                )
        return node

    def sum(self) -> Node:
        node = self.product()
        while self.at_op("+", "-"):
            op = self.take()
            node = Binary(op.text, node, self.product(), op.column)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/"):
            op = self.take()
            node = Binary(op.text, node, self.unary(), op.column)
        return node

    def unary(self) -> Node:
        if self.at_op("-"):
            op = self.take()
            return Unary("-", self.unary(), op.column)
        if self.at_op("+"):
            self.take()
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        token = self.take()
        if token.kind == "num":
            return Num(float(token.text), token.column)
        if token.kind == "name":
            if token.text in ("true", "false"):
                return Bool(token.text == "true", token.column)
            return Name(token.text, token.column)
        if token.kind == "op" and token.text == "(":
            node = self.or_expr()
            close = self.take()
            if close.kind != "op" or close.text != ")":
                raise ExprError(
                    f"expected ')' to close the '(' at column {token.column}", close.column
                )
            return node
        if token.kind == "end":
            raise ExprError("the condition ends too early", token.column)
        raise ExprError(f"unexpected {token.text!r}", token.column)


def parse(text: str) -> Node:
    """Parse a condition; raises ExprError naming the column of the mistake."""
    return _Parser(text).parse()


def names(node: Node) -> set[str]:
    """Every name a condition uses (to check them when the spec is loaded)."""
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Unary):
        return names(node.operand)
    if isinstance(node, Binary):
        return names(node.left) | names(node.right)
    return set()


def check(text: str, allowed: Iterable[str]) -> Node:
    """Parse and verify that only `allowed` names occur; the spec validator calls this."""
    node = parse(text)
    allowed_set = set(allowed)
    for name_node in _name_nodes(node):
        if name_node.name not in allowed_set:
            known = ", ".join(sorted(allowed_set))
            raise ExprError(f"unknown name {name_node.name!r}; known: {known}", name_node.column)
    return node


def _name_nodes(node: Node) -> list[Name]:
    if isinstance(node, Name):
        return [node]
    if isinstance(node, Unary):
        return _name_nodes(node.operand)
    if isinstance(node, Binary):
        return _name_nodes(node.left) + _name_nodes(node.right)
    return []


# ---------------------------------------------------------------------------- evaluation


def evaluate(node: Node | str, env: Mapping[str, Value | None]) -> Value:
    """Evaluate; a missing value, a type mix-up or a division by zero raises ExprError."""
    tree = parse(node) if isinstance(node, str) else node
    return _eval(tree, env)


def _number(value: Value, column: int, what: str) -> float:
    if isinstance(value, bool):
        raise ExprError(f"{what} needs numbers, got a true/false value", column)
    return value


def _truth(value: Value, column: int, what: str) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"{what} needs true/false values, got the number {value:g}", column)
    return value


def _eval(node: Node, env: Mapping[str, Value | None]) -> Value:
    if isinstance(node, Num | Bool):
        return node.value
    if isinstance(node, Name):
        if node.name not in env or env[node.name] is None:
            raise ExprError(f"{node.name!r} has no value here", node.column)
        value = env[node.name]
        assert value is not None
        if isinstance(value, float) and math.isnan(value):
            raise ExprError(f"{node.name!r} is not a number (NaN)", node.column)
        return value
    if isinstance(node, Unary):
        operand = _eval(node.operand, env)
        if node.op == "not":
            return not _truth(operand, node.column, "'not'")
        return -_number(operand, node.column, "'-'")
    if node.op in ("and", "or"):
        # short-circuit, like every language users know
        left_truth = _truth(_eval(node.left, env), node.column, f"'{node.op}'")
        if node.op == "and" and not left_truth:
            return False
        if node.op == "or" and left_truth:
            return True
        return _truth(_eval(node.right, env), node.column, f"'{node.op}'")
    left = _eval(node.left, env)
    right = _eval(node.right, env)
    if node.op in ("==", "!="):
        if isinstance(left, bool) != isinstance(right, bool):
            raise ExprError(f"'{node.op}' compares a number with a true/false value", node.column)
        return (left == right) if node.op == "==" else (left != right)
    a = _number(left, node.column, f"'{node.op}'")
    b = _number(right, node.column, f"'{node.op}'")
    if node.op == "<":
        return a < b
    if node.op == "<=":
        return a <= b
    if node.op == ">":
        return a > b
    if node.op == ">=":
        return a >= b
    if node.op == "+":
        return a + b
    if node.op == "-":
        return a - b
    if node.op == "*":
        return a * b
    if b == 0:
        raise ExprError("division by zero", node.column)
    return a / b


def evaluate_condition(node: Node | str, env: Mapping[str, Value | None]) -> bool:
    """Evaluate a condition, which must come out true or false."""
    value = evaluate(node, env)
    if not isinstance(value, bool):
        raise ExprError(
            f"a condition must be true or false, but this one gives the number {value:g}; "
            "compare it, e.g. 'result > 0.05'",
            1,
        )
    return value
