"""Hypothesis strategies that break a valid zerodown.yaml the ways people and attackers do:
wrong types, values out of range, unknown keys, duplicate keys, bad bytes, alias bombs, a
file cut short. Each draws the bytes of a whole file."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import yaml
from hypothesis import strategies as st
from samples import FULL

Path_ = tuple[str | int, ...]


def paths(doc: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every place in `doc` that holds a value."""
    found: list[Path_] = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        here = (*prefix, key)
        found.append(here)
        found += paths(value, here)
    return found


PATHS = paths(FULL)


def at(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


# Values that are wrong somewhere: types, ranges, sizes, non-finite numbers.
BAD_VALUES = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**30, 256, 257, 65536, 1.5, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "0s",
            "-1s",
            "99999999999d",
            "1e308",
            "100%",
            "0%",
            "101%",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "GET",
            "x" * 70_000,
            "{port",
            "${",
            "[a-z]+",
            "\u202e",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


@st.composite
def wrong_value(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(FULL)
    path = draw(st.sampled_from(PATHS))
    at(doc, path[:-1])[path[-1]] = draw(BAD_VALUES)
    return dump(doc)


@st.composite
def unknown_key(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(FULL)
    holders = [()] + [p for p in PATHS if isinstance(at(FULL, p), dict)]
    target = at(doc, draw(st.sampled_from(holders)))
    target[draw(st.text(min_size=1, max_size=10))] = draw(BAD_VALUES)
    return dump(doc)


@st.composite
def removed_key(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(FULL)
    path = draw(st.sampled_from([p for p in PATHS if isinstance(p[-1], str)]))
    del at(doc, path[:-1])[path[-1]]
    return dump(doc)


@st.composite
def duplicate_key(draw: st.DrawFn) -> bytes:
    """A `key: value` line said twice, possibly with another value."""
    lines = dump(FULL).decode().splitlines(keepends=True)
    candidates = [n for n, line in enumerate(lines) if ": " in line and "- " not in line]
    n = draw(st.sampled_from(candidates))
    key = lines[n].split(": ", 1)[0]
    again = draw(st.sampled_from([lines[n], f"{key}: {draw(st.integers(-5, 5))}\n"]))
    return "".join([*lines[: n + 1], again, *lines[n + 1 :]]).encode()


@st.composite
def bad_bytes(draw: st.DrawFn) -> bytes:
    raw = dump(FULL)
    where = draw(st.integers(0, len(raw)))
    noise = draw(
        st.one_of(
            st.binary(min_size=1, max_size=4),
            st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\x07", b"\xed\xa0\x80", b"\t", b"\r"]),
        )
    )
    return raw[:where] + noise + raw[where:]


def bomb(depth: int, width: int) -> str:
    names = [f"l{n}" for n in range(depth)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
    return "\n".join(lines) + "\n"


@st.composite
def alias_bomb(draw: st.DrawFn) -> bytes:
    """Aliases that expand exponentially, or refer to themselves."""
    if draw(st.booleans()):
        return dump(FULL) + bomb(draw(st.integers(3, 12)), draw(st.integers(2, 12))).encode()
    return dump(FULL).replace(b"run:\n", b"run:\n  loop: &loop [*loop]\n", 1)


@st.composite
def cut_short(draw: st.DrawFn) -> bytes:
    raw = dump(FULL)
    return raw[: draw(st.integers(0, len(raw) - 1))]


MUTATED = st.one_of(
    wrong_value(),
    unknown_key(),
    removed_key(),
    duplicate_key(),
    bad_bytes(),
    alias_bomb(),
    cut_short(),
)
"""The bytes of a zerodown.yaml that is probably, not certainly, wrong."""
