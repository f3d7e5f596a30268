"""Evaluation results in OpenFeature's shapes (OFREP JSON, OpenFeature values). Pure.

The value of a flag:
- a flag without variants is a boolean flag: its value is whether it is on (variant "on"/"off");
- a flag with variants (on the flag or its strategies) has the chosen variant's payload as value
  (a string; a number for `number`; parsed JSON for `json`; a list for `csv`), or the variant's
  name when it has no payload. When no variant is chosen (the flag is off) the value is left out,
  so an OpenFeature client falls back to its default.
"""

from __future__ import annotations

import json
from typing import Any

from zerodown.flags.evaluate import DISABLED_VARIANT, Evaluation
from zerodown.flags.model import Flag, Payload


def has_variants(flag: Flag) -> bool:
    return bool(flag.variants) or any(s.variants for s in flag.strategies)


def payload_value(payload: Payload) -> Any:
    if payload.type == "number":
        number = float(payload.value)
        return int(number) if number.is_integer() and "." not in payload.value else number
    if payload.type == "json":
        return json.loads(payload.value)
    if payload.type == "csv":
        return [p.strip() for p in payload.value.split(",") if p.strip()]
    return payload.value


def flag_value(flag: Flag, e: Evaluation) -> tuple[bool, Any, str]:
    """(has a value, the value, the variant name)."""
    if not has_variants(flag):
        return True, e.enabled, "on" if e.enabled else "off"
    if not e.variant_enabled:
        return False, None, DISABLED_VARIANT
    if e.payload is None:
        return True, e.variant, e.variant
    try:
        return True, payload_value(e.payload), e.variant
    except ValueError:
        return True, e.payload.value, e.variant  # a malformed payload is passed as a string


def ofrep_success(flag: Flag, e: Evaluation) -> dict[str, Any]:
    has_value, value, variant = flag_value(flag, e)
    out: dict[str, Any] = {
        "key": flag.key,
        "reason": e.reason.value,
        "variant": variant,
        "metadata": {"enabled": e.enabled, "flagType": flag.type.value},
    }
    if has_value:
        out["value"] = value
    return out


def ofrep_error(key: str, code: str, details: str) -> dict[str, Any]:
    return {"key": key, "errorCode": code, "errorDetails": details}
