"""The bounds on every text, list and key the flags API accepts.

A flag is served to every SDK and dashboard, so one huge flag costs every reader: each text and
list in it is bounded (the controller's body limit bounds a whole request on top of this). Input
over a bound is a 422 naming the field, never a 5xx.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator

from zerodown.flags.model import Flag

MAX_KEY = 200  # as KEY_PATTERN
MAX_TEXT = 1_000  # description, owner, names, constraint values, notes
MAX_PAYLOAD = 10_000  # a variant's payload (JSON or CSV text)
MAX_ITEMS = 1_000  # entries of any list: strategies, constraints, values, user ids, variants
MAX_USAGE_KEYS = 10_000  # keys in one usage report


def _oversized(value: Any, path: str) -> str | None:
    """The first text or list in `value` over its limit, as `path: what is wrong`."""
    if isinstance(value, str):
        limit = MAX_PAYLOAD if path.endswith("payload.value") else MAX_TEXT
        if len(value) > limit:
            return f"{path}: {len(value)} characters; at most {limit}"
    elif isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            return f"{path}: {len(value)} entries; at most {MAX_ITEMS}"
        for n, item in enumerate(value):
            if problem := _oversized(item, f"{path}.{n}"):
                return problem
    elif isinstance(value, dict):
        for name, item in value.items():
            if problem := _oversized(item, f"{path}.{name}" if path else str(name)):
                return problem
    return None


def bounded_flag(flag: Flag) -> Flag:
    """The flag, or ValueError naming the first field over its limit."""
    if problem := _oversized(flag.model_dump(mode="json"), ""):
        raise ValueError(problem)
    return flag


BoundedFlag = Annotated[Flag, AfterValidator(bounded_flag)]
FlagKey = Annotated[str, Path(min_length=1, max_length=MAX_KEY)]
