"""What several benches share: waiting for the controller's status to reach a state; the CPU
time of a process and its children."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zerodown.control.client import Client


def wait_status(
    client: Client,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 60,
    routed: bool = False,
) -> dict[str, Any]:
    """Poll GET /api/status until `predicate(status)`; the whole answer then. `routed`: and
    until the router runs the status's route table (the status is saved before its routes are
    applied; a reloading router such as nginx takes a few hundred milliseconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get("/api/status")
        if predicate(state["status"]) and (not routed or state.get("routes_applied") is not False):
            return state
        time.sleep(0.05)
    raise TimeoutError(f"waited {timeout:g}s for {what}; see the workspace's .zerodown/logs/")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def round_ratios(
    rounds: Sequence[tuple[float, ...]], base: Sequence[tuple[float, ...]]
) -> tuple[list[float], list[float]]:
    """Per-round ratios of one case to another run in the same rounds, each sorted: requests/s
    (item 0) and p99 (item 2). A round's cases run back to back, so on a shared machine the
    per-round ratio is steadier than the ratio of the medians."""
    pairs = list(zip(rounds, base, strict=True))
    return sorted(c[0] / b[0] for c, b in pairs), sorted(c[2] / b[2] for c, b in pairs)
