"""The stored form of a session: versioned JSON that two releases can share.

During a rolling deploy the old and the new release serve the same users at the same time, so
each must read what the other wrote. Rules that make that safe:

- JSON only (never pickle: a pickle names classes, so a renamed class logs everyone out, and
  unpickling data from a shared store runs code).
- `format` is the version of the writer; `min_reader` is the oldest reader format that can still
  read the document. Additive changes keep `min_reader` at 1, so an old release reads a new
  release's sessions; a breaking change raises `min_reader` and an old reader refuses clearly
  instead of misreading.
- Top-level fields a reader does not know are kept in `extra` and written back unchanged, so an
  old release that touches a session does not strip what the new release added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
"""The format this release writes."""

MIN_READER = 1
"""The oldest reader format that understands what this release writes."""

_KNOWN = frozenset({"format", "min_reader", "created_at", "data"})


class SessionFormatError(ValueError):
    """A stored session cannot be read by this release (too new, or not a session at all)."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    data: dict[str, Any]
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level fields written by another release, preserved verbatim."""


def encode(record: SessionRecord) -> str:
    doc: dict[str, Any] = dict(record.extra)
    doc.update(format=FORMAT, min_reader=MIN_READER, created_at=record.created_at, data=record.data)
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"session data must be JSON (str, int, float, bool, None, list, dict): {exc}; "
            "store an id or a plain dict instead of the object"
        ) from None


def decode(text: str | bytes) -> SessionRecord:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SessionFormatError(f"stored session is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SessionFormatError("stored session is not a JSON object")
    min_reader = doc.get("min_reader", 1)
    if not isinstance(min_reader, int) or min_reader > FORMAT:
        raise SessionFormatError(
            f"stored session needs a reader of format {min_reader}, this release reads format "
            f"{FORMAT}; deploy a release that understands it or roll the writer back"
        )
    data = doc.get("data")
    created_at = doc.get("created_at")
    if not isinstance(data, dict) or not isinstance(created_at, int | float):
        raise SessionFormatError("stored session lacks `data` (object) or `created_at` (number)")
    extra = {k: v for k, v in doc.items() if k not in _KNOWN}
    return SessionRecord(data=data, created_at=float(created_at), extra=extra)
