"""Mutated specs, generated from a valid one: each is loaded or refused with file:line, and
nothing else ever comes out of the loader (issue 10, "Proof, in CI")."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from mutations import MUTATED, at, dump
from samples import FULL

from zerodown.core.errors import SpecError
from zerodown.spec.load import load_spec

# the edit loop gets a taste (a spec load is ~40 ms of pure-Python YAML); the slow lane, 1,000
# (3,000 took a minute of the whole suite on a slow machine for little more coverage)
FAST = settings(max_examples=20, deadline=None, database=None)
MORE = settings(
    max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


# What a Python traceback in a message would show. Built at run time: Hypothesis seeds its
# strings with the literals of the code it runs, and once made a field named "Traceback", which
# the refusal rightly quotes ("Traceback: unknown field").
TRACEBACK = " ".join(("Traceback", "(most", "recent", "call", "last)"))


def load_or_refuse(raw: bytes) -> SpecError | None:
    """None when the bytes are a valid spec; otherwise the SpecError, checked for its form."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zerodown.yaml"
        path.write_bytes(raw)
        try:
            load_spec(path)
        except SpecError as exc:
            text = str(exc)
            assert text.startswith(f"{path}:{exc.line}: "), text
            assert exc.line is not None and 1 <= exc.line <= raw.count(b"\n") + 1, text
            assert TRACEBACK not in text and len(text) < 5000, text
            return exc
    return None


@FAST
@given(MUTATED)
def test_mutated_specs_load_or_name_a_line(raw: bytes) -> None:
    load_or_refuse(raw)


@pytest.mark.slow
@MORE
@given(MUTATED)
def test_more_mutated_specs_load_or_name_a_line(raw: bytes) -> None:
    load_or_refuse(raw)


DURATIONS = [
    ("run", "drain"),
    ("run", "stop_timeout"),
    ("probes", "startup", "period"),
    ("probes", "liveness", "initial_delay"),
    ("probes", "readiness", "timeout"),
    ("router", "header_timeout"),
    ("strategy", "canary", "progress_deadline"),
    ("strategy", "canary", "steps", 1, "pause", "duration"),
    ("analysis", "templates", "health", "metrics", 0, "interval"),
    ("gate", "timeout"),
    ("smoke", "timeout"),
    ("notify", 0, "timeout"),
]
COUNTS = [
    ("instances",),
    ("probes", "startup", "failure_threshold"),
    ("probes", "readiness", "tcp", "port"),
    ("strategy", "canary", "canary_scale"),
    ("strategy", "canary", "steps", 0, "set_weight"),
    ("analysis", "templates", "health", "metrics", 0, "count"),
    ("analysis", "templates", "health", "metrics", 0, "min_samples"),
    ("notify", 0, "retries"),
]
NOT_DURATIONS = [True, -1, "-1s", float("inf"), float("nan"), "99999999999d", 10**30, [], "5 s s"]
NOT_COUNTS = [True, False, -1, 10**30, 1.5, "2", float("inf"), "1%"]


def mutated(path: tuple[Any, ...], value: Any) -> bytes:
    doc = copy.deepcopy(FULL)
    at(doc, path[:-1])[path[-1]] = value
    return dump(doc)


@pytest.mark.parametrize("path", DURATIONS, ids=lambda p: ".".join(map(str, p)))
def test_every_duration_has_a_range(path: tuple[Any, ...]) -> None:
    for value in NOT_DURATIONS:
        error = load_or_refuse(mutated(path, value))
        assert error is not None, f"{path} = {value!r} was accepted"
        assert error.field.startswith(".".join(map(str, path[:2]))), str(error)


@pytest.mark.parametrize("path", COUNTS, ids=lambda p: ".".join(map(str, p)))
def test_every_count_has_a_range(path: tuple[Any, ...]) -> None:
    for value in NOT_COUNTS:
        error = load_or_refuse(mutated(path, value))
        assert error is not None, f"{path} = {value!r} was accepted"
