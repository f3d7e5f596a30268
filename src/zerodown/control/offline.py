"""What can be known of a service while no controller runs: what its state store holds, and
what it left running. `zerodown up` and `zerodown down` decide with it before they start one.
"""

from __future__ import annotations

import sqlite3

from zerodown.control.process import router_pid
from zerodown.core.model import Instance, ServiceStatus
from zerodown.paths import Paths
from zerodown.store.sqlite import SqliteStore


def has_release(paths: Paths, service: str) -> bool:
    """Whether the store of a stopped service holds something to start without --version (a
    stable release or a rollout under way). Read before a controller is started, so `up` on a
    new service without a version starts nothing."""
    try:
        stored = _stored(paths, service)
    except sqlite3.Error:
        return True  # let the controller read it and report what is wrong
    if stored is None:
        return False
    status, _ = stored
    return status.stable is not None or (status.rollout is not None and status.rollout.active)


def left_running(paths: Paths, service: str | None) -> list[str]:
    """What still runs for a service whose controller is gone: its router and instances."""
    router = router_pid(paths)
    left = [f"router (pid {router})"] if router is not None else []
    try:
        stored = _stored(paths, service) if service is not None else None
    except sqlite3.Error:
        stored = None
    if stored is not None:
        # A handle is the platform's to read: whether each instance still runs is for the
        # controller to find out (it adopts it or forgets it, then stops what runs).
        left += [i.id for i in stored[1] if i.handle is not None and i.phase.value != "stopped"]
    return left


def _stored(paths: Paths, service: str) -> tuple[ServiceStatus, list[Instance]] | None:
    if not paths.store.exists():
        return None
    store = SqliteStore(paths.store)
    try:
        return store.status(service), store.instances(service)
    finally:
        store.close()
