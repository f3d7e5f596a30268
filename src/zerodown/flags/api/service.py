"""What the flags API's handlers share: one FlagService per `make_flags_router` call.

The handlers are module-level functions; they reach the service through the `Service`
dependency. Invariants:
- Every flags route has `FlagService.attach` as its first dependency (the composed router's own),
  so `get_service` always finds the service of the router that matched the request, even when
  one app mounts several flag routers.
- Both are `async def`: they run on the event loop, without a trip through the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request

from zerodown.flags.model import Flag
from zerodown.flags.stores import FlagStore


def definitions_document(version: int, flags: list[Flag]) -> dict[str, Any]:
    # Usage times are left out: they change on every evaluation and would churn every ETag.
    return {
        "version": version,
        "flags": [f.model_dump(mode="json", exclude={"last_evaluated_at"}) for f in flags],
    }


class DefinitionsCache:
    """The store's flags, re-read only when its version moves (one cheap read per request)."""

    def __init__(self, store: FlagStore):
        self._store = store
        self._lock = threading.Lock()
        self._version = -1
        self._flags: dict[str, Flag] = {}

    def current(self) -> tuple[int, dict[str, Flag]]:
        version = self._store.version()
        with self._lock:
            if version != self._version:
                v, flags = self._store.snapshot()
                self._version, self._flags = v, {f.key: f for f in flags}
            return self._version, self._flags


class ChangeWatcher:
    """One watcher per router follows the store and fans each new definitions document out to
    every open stream: one thread and one read per change, however many SDKs listen."""

    def __init__(self, store: FlagStore):
        self._store = store
        self._version = -1
        self._doc = ""
        self._subscribers = 0
        self._cond: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(1)  # the watcher's own thread, not the shared pool
        self._generation = 0

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[None]:
        if self._subscribers == 0 or self._cond is None or self._task is None or self._task.done():
            # A new watcher; a previous one that is winding down no longer writes (generation).
            self._generation += 1
            self._cond = asyncio.Condition()
            self._version, self._doc = -1, ""
            self._task = asyncio.get_running_loop().create_task(self._watch(self._generation))
        self._subscribers += 1
        try:
            yield
        finally:
            self._subscribers -= 1

    async def wait_newer(self, seen: int, timeout: float) -> tuple[int, str]:
        assert self._cond is not None
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._cond.wait_for(lambda: self._version != seen)
            return self._version, self._doc

    async def _watch(self, generation: int) -> None:
        cond = self._cond
        assert cond is not None
        seen = -1
        while generation == self._generation and (self._subscribers > 0 or seen < 0):
            new = await anyio.to_thread.run_sync(
                self._store.wait_for_change, seen, 0.5, limiter=self._limiter
            )
            if new == seen:
                continue
            version, flags = await anyio.to_thread.run_sync(
                self._store.snapshot, limiter=self._limiter
            )
            doc = json.dumps(definitions_document(version, flags), separators=(",", ":"))
            seen = version
            async with cond:
                if generation == self._generation:
                    self._version, self._doc = version, doc
                    cond.notify_all()


class UsageRecorder:
    """Which flags were evaluated; written to the store at most every `interval` seconds."""

    def __init__(self, store: FlagStore, clock: Callable[[], datetime], interval: float = 30.0):
        self._store, self._clock, self._interval = store, clock, interval
        self._keys: set[str] = set()
        self._last = 0.0
        self._lock = threading.Lock()

    def record(self, keys: list[str]) -> None:
        with self._lock:
            self._keys.update(keys)
            if time.monotonic() - self._last < self._interval:
                return
            pending, self._keys, self._last = self._keys, set(), time.monotonic()
        self._store.mark_evaluated(sorted(pending), self._clock())


class FlagService:
    """The store, the caches over it, the clock and the tokens of one flags router."""

    def __init__(
        self,
        store: FlagStore,
        *,
        admin_token: str,
        read_token: str | None,
        clock: Callable[[], datetime],
        heartbeat: float,
        usage_interval: float,
    ):
        self.store = store
        self.admin_token = admin_token
        self.read_token = read_token
        self.clock = clock
        self.heartbeat = heartbeat  # seconds between keep-alive comments on an idle stream
        self.definitions = DefinitionsCache(store)
        self.changes = ChangeWatcher(store)
        self.usage = UsageRecorder(store, clock, usage_interval)

    async def attach(self, request: Request) -> None:
        """The first dependency of every route of this service's router: see get_service."""
        request.state.flag_service = self


async def get_service(request: Request) -> FlagService:
    service = getattr(request.state, "flag_service", None)
    if not isinstance(service, FlagService):
        raise RuntimeError("a flags API route was mounted without make_flags_router")
    return service


Service = Annotated[FlagService, Depends(get_service)]
