"""The router's log: one JSON event per line on stderr, never one per request."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log(event: str, **fields: Any) -> None:
    line = json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str)
    print(line, file=sys.stderr, flush=True)
