"""What several benches share: waiting for the controller's status to reach a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zerodown.control.client import Client


def wait_status(
    client: Client, predicate: Callable[[dict[str, Any]], bool], *, what: str, timeout: float = 60
) -> dict[str, Any]:
    """Poll GET /api/status until `predicate(status)`; the whole answer then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get("/api/status")
        if predicate(state["status"]):
            return state
        time.sleep(0.05)
    raise TimeoutError(f"waited {timeout:g}s for {what}; see the workspace's .zerodown/logs/")
