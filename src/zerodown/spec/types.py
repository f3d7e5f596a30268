"""Field types shared by every part of zerodown.yaml.

Durations are strings like "500ms", "5s", "2m", "1h" (a bare number means seconds) and become
floats of seconds. Percentages are 0-100. Counts that may also be percentages ("25%", as in
Kubernetes' maxSurge) stay as given and are resolved against a total by `resolve_count`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 5s, 2m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    raise ValueError(f"{value!r} is not a duration; write it like 500ms, 5s, 2m or 1h")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 120 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
"""Seconds, written in the spec as "500ms", "5s", "2m"."""

Percent = Annotated[float, Field(ge=0, le=100)]


def _count_or_percent(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected a count like 1 or a percentage like '25%'")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value.strip()):
        if int(value.strip()[:-1]) > 100:
            raise ValueError(f"{value!r} is over 100%")
        return value.strip()
    raise ValueError(f"{value!r} is neither a count (0, 1, 2…) nor a percentage like '25%'")


CountOrPercent = Annotated[int | str, BeforeValidator(_count_or_percent)]


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
    if not isinstance(value, str) or not VERSION_PATTERN.match(value):
        shown = value if len(str(value)) <= 40 else f"{str(value)[:40]}…"
        raise ValueError(f"version {shown!r} is not valid: {VERSION_RULE}")
    return value


Version = Annotated[str, BeforeValidator(check_version)]
"""A release's version, e.g. v2 or 1.4.0-rc.1 (see VERSION_PATTERN)."""


class StrictModel(BaseModel):
    """Every spec model: unknown fields are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
