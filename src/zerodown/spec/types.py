"""Field types shared by every part of zerodown.yaml.

Durations are strings like "500ms", "5s", "2m", "1h" (a bare number means seconds) and become
floats of seconds. Percentages are 0-100. Counts that may also be percentages ("25%", as in
Kubernetes' maxSurge) stay as given and are resolved against a total by `resolve_count`.

Every value has a range: a duration is finite and at most MAX_DURATION, a period is at least
MIN_PERIOD (a probe with `period: 0s` is a busy loop), a count has an upper bound, and a bool is
never a number (the models are strict). A value outside its range is a spec error naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

MAX_DURATION = 30 * 86400.0
"""30 days: longer than any wait a rollout needs, far short of what overflows a timer."""
MIN_PERIOD = 0.1
"""The shortest probe period: below it a probe is a busy loop, not a health check."""
MIN_INTERVAL = 0.01
"""The shortest time between two analysis measurements (tests measure every 20-50 ms)."""
MIN_TIMEOUT = 0.001
"""A timeout, deadline or header timeout of 0 would fail everything at once."""
MAX_INSTANCES = 256
"""The most instances of one release (and so the largest surge or canary scale)."""
MAX_STRING = 65_536
"""Characters in one string of the spec: an env value holds a JSON document, not a file."""


def shorten(value: Any, limit: int = 40) -> str:
    """`value` for an error message: a 5 MB typo is not echoed back in full."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        return "a number this long"
    return text if len(text) <= limit else f"{text[:limit]}…"


def parse_duration(value: Any) -> float:
    """Seconds from "500ms", "5s", "2m", "1h", "1d" or a number; ValueError says what to fix."""
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{shorten(value)} is not a finite duration; write it like 5s or 2m")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 5s, 2m or 1h")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an int beyond any float
            return math.inf
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    raise ValueError(f"{shorten(value)} is not a duration; write it like 500ms, 5s, 2m or 1h")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 120 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"


def _spell(seconds: float) -> str:
    """A duration for a range error, in the largest unit that reads well (30d, not 43200m)."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return format_duration(seconds)


def _within(low: float, high: float) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if seconds < low:
            raise ValueError(f"{_spell(seconds)} is too short; use at least {_spell(low)}")
        if seconds > high:
            raise ValueError(f"{_spell(seconds)} is too long; use at most {_spell(high)}")
        return seconds

    return check


_AS_DURATION = BeforeValidator(parse_duration, json_schema_input_type=str | float)

Duration = Annotated[float, _AS_DURATION, AfterValidator(_within(0.0, MAX_DURATION))]
"""Seconds, written in the spec as "500ms", "5s", "2m"; from 0 to MAX_DURATION."""

Period = Annotated[float, _AS_DURATION, AfterValidator(_within(MIN_PERIOD, MAX_DURATION))]
"""How often a probe runs."""

Interval = Annotated[float, _AS_DURATION, AfterValidator(_within(MIN_INTERVAL, MAX_DURATION))]
"""Time between two measurements of a metric."""

Timeout = Annotated[float, _AS_DURATION, AfterValidator(_within(MIN_TIMEOUT, MAX_DURATION))]
"""A timeout or deadline: never 0."""

Percent = Annotated[float, Field(ge=0, le=100)]


def _count_or_percent(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected a count like 1 or a percentage like '25%'")
    if isinstance(value, int) and 0 <= value <= MAX_INSTANCES:
        return value
    if isinstance(value, int) and value > MAX_INSTANCES:
        raise ValueError(f"{shorten(value)} is more than {MAX_INSTANCES} instances")
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value.strip()):
        if int(value.strip()[:-1]) > 100:
            raise ValueError(f"{value!r} is over 100%")
        return value.strip()
    raise ValueError(f"{shorten(value)} is neither a count (0, 1, 2…) nor a percentage like '25%'")


CountOrPercent = Annotated[
    int | str, BeforeValidator(_count_or_percent, json_schema_input_type=int | str)
]


def resolve_count(value: int | str, total: int, *, round_up: bool) -> int:
    """Kubernetes' rule: max_surge rounds up, max_unavailable rounds down."""
    if isinstance(value, int):
        return value
    share = int(value[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


# A release's version names instance ids, log files, database schemas and labels, so it is kept to
# characters that are safe in all of them (the OCI image tag's alphabet, minus the leading '.'/'-').
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$")
VERSION_RULE = "1-63 characters: letters, digits and . _ + -, starting with a letter or digit"


def check_version(value: str) -> str:
    """A version as given to `deploy` / `up --version`, or ValueError saying what to fix."""
    # fullmatch: `$` in VERSION_PATTERN would also accept "v1\n"
    if not isinstance(value, str) or not VERSION_PATTERN.fullmatch(value):
        shown = value if len(str(value)) <= 40 else f"{str(value)[:40]}…"
        raise ValueError(f"version {shown!r} is not valid: {VERSION_RULE}")
    return value


Version = Annotated[str, BeforeValidator(check_version)]
"""A release's version, e.g. v2 or 1.4.0-rc.1 (see VERSION_PATTERN)."""


class StrictModel(BaseModel):
    """Every spec model: unknown fields are errors, values are not coerced (`true` is not 1,
    `"2"` is not 2), numbers are finite and strings at most MAX_STRING characters."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        strict=True,
        allow_inf_nan=False,
        str_max_length=MAX_STRING,
    )


def _finite_json(value: Any) -> Any:
    """A free-form JSON value (a smoke check's body, a token's claims) holds no NaN or infinity:
    they have no JSON spelling, so the value could not be sent or stored."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a finite number")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return value


JsonValue = Annotated[Any, AfterValidator(_finite_json)]
"""Any JSON value, numbers finite."""
