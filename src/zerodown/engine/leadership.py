"""Which of a service's controllers acts: the leader lease, as the controller keeps it.

Several controllers may run for one service on one shared store (two machines on one
PostgreSQL; or, by accident, two on one SQLite file). Exactly one leads: it renews the lease row
every RENEW_EVERY seconds for LEASE seconds (the store's clock), runs the reconcile loop and the
commands, and every one of its writes is fenced by its token in the write's own transaction
(store/leases.py says why a lease row and not an advisory lock). The others are standbys: they
serve reads, ask for the lease every STANDBY_POLL seconds, and take it once it has run out, or at
once when its holder is a process of this machine that no longer exists (a controller restarted
after kill -9 does not wait out its own lease).

A leader also keeps a deadline of its own, on the monotonic clock, which keeps running while a
process is paused: the lease is valid only until LEASE - SAFETY seconds after the renewal that
was *sent* (the store's deadline starts later, when it received it). `acting` is false past it,
and the engine asks `acting` before each action outside the store (router, platform), so a
leader paused past its lease that wakes up does not act on what it decided before the pause;
its first renewal then finds the lease taken and it steps down to standby.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from zerodown.core.errors import NotLeader, StoreUnavailable
from zerodown.core.ports import LeaseStore

log = logging.getLogger("zerodown.leadership")

LEASE = 5.0  # seconds a lease runs unless renewed: a standby takes over within this after a crash
RENEW_EVERY = 1.0  # seconds between renewals by the leader (several may fail before it is lost)
STANDBY_POLL = 0.5  # seconds between a standby's claims
SAFETY = 1.0  # seconds the leader's own deadline ends before the store's
STANDBY_SEEN = 10.0  # a controller seen within this many seconds is listed as a standby


def controller_id() -> str:
    """This controller as status shows it: hostname:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Role(StrEnum):
    LEADER = "leader"
    STANDBY = "standby"


class Leadership:
    def __init__(
        self,
        store: LeaseStore,
        *,
        service: str,
        me: str | None = None,
        url: Callable[[], str] = lambda: "",
        lease: float = LEASE,
    ) -> None:
        self.store = store
        self.service = service
        self.me = me or controller_id()
        self.url = url
        self.lease = lease
        self.role = Role.STANDBY
        self.token: int | None = None
        self.terms = 0  # how many times this controller became leader
        self._valid_until = -math.inf  # monotonic
        self._changed = asyncio.Event()
        store.fence(service, self.me, None)  # a standby writes nothing

    @property
    def acting(self) -> bool:
        """This controller leads, and its lease has not run out by its own clock."""
        return self.role is Role.LEADER and time.monotonic() < self._valid_until

    def must_act(self, what: str) -> None:
        """Raise NotLeader instead of doing `what` when this controller may not act."""
        if not self.acting:
            raise NotLeader(f"{self.me} does not hold the lease of {self.service}: not {what}")

    def tick(self) -> None:
        """One claim: renew the lease as leader, or ask for it as standby."""
        sent = time.monotonic()
        try:
            dead = self._dead_holder() if self.role is Role.STANDBY else None
            lease = self.store.claim(
                self.service, self.me, ttl=self.lease, url=self.url(), dead=dead
            )
        except StoreUnavailable as exc:
            # Past its own deadline a leader stops acting (`acting`), but keeps its engine and
            # what it has yet to write: if the store comes back and no one took the lease, the
            # same term goes on; if someone did, the next claim steps it down.
            log.warning("lease: %s", exc)
            return
        if lease is None:
            if self.role is Role.LEADER:
                self._step_down("another controller holds the lease")
            return
        late = sent - (self._valid_until - self.lease + SAFETY)
        if self.role is Role.LEADER and late > 2 * RENEW_EVERY:
            log.warning(
                "lease renewed %.1fs after the last renewal (the event loop was busy)", late
            )
        self._valid_until = sent + self.lease - SAFETY
        if self.role is Role.STANDBY or lease.token != self.token:
            self.token, self.role = lease.token, Role.LEADER
            self.terms += 1
            self.store.fence(self.service, self.me, lease.token)
            log.info("%s leads %s (term %d)", self.me, self.service, lease.token)
            self._changed.set()

    def _step_down(self, why: str) -> None:
        log.warning("%s steps down to standby: %s", self.me, why)
        self.role, self.token, self._valid_until = Role.STANDBY, None, -math.inf
        self.store.fence(self.service, self.me, None)
        self._changed.set()

    def _dead_holder(self) -> str | None:
        """The holder of the lease when it is a process of this machine that is gone."""
        lease = self.store.leadership(self.service).lease
        if lease is None or lease.holder == self.me:
            return None
        host, _, pid = lease.holder.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            return None
        return lease.holder

    async def run(self) -> None:
        """Claim for ever (cancelled when the controller exits)."""
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not end the renewals silently
                log.exception("lease: claiming failed")
                if self.role is Role.LEADER and not self.acting:
                    self._step_down("the lease could not be renewed in time")
            await asyncio.sleep(RENEW_EVERY if self.role is Role.LEADER else STANDBY_POLL)

    async def wait_for(self, role: Role) -> None:
        while self.role is not role:
            self._changed.clear()
            await self._changed.wait()

    def release(self) -> None:
        """On a clean exit: the lease is free at once for a standby."""
        if self.role is Role.LEADER:
            self.store.fence(self.service, self.me, None)
            self.role = Role.STANDBY
        try:
            self.store.release(self.service, self.me)
        except StoreUnavailable as exc:
            log.warning("the lease was not released (a standby waits it out): %s", exc)

    def summary(self) -> dict[str, Any]:
        """Who leads since when, and the standbys seen lately (for status and the API)."""
        seen = self.store.leadership(self.service)
        lease = seen.lease
        running = lease is not None and lease.expires_at > seen.now
        urls = {c.id: c.url for c in seen.controllers}
        leader = None
        if lease is not None and running:
            leader = {
                "id": lease.holder,
                "since": lease.since,
                "for": max(0.0, seen.now - lease.since),
                "term": lease.token,
                "url": urls.get(lease.holder, ""),
            }
        standbys = [
            {"id": c.id, "url": c.url, "seen_ago": max(0.0, seen.now - c.seen_at)}
            for c in seen.controllers
            if (leader is None or c.id != leader["id"]) and seen.now - c.seen_at < STANDBY_SEEN
        ]
        return {"this": self.me, "role": self.role.value, "leader": leader, "standbys": standbys}


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a controller killed by -9 whose parent has not
    reaped it yet is gone all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")
