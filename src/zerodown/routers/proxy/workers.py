"""`router: {workers: N}`: N built-in router processes share the listening ports (SO_REUSEPORT;
the kernel spreads new connections among them), for machines with cores to spare.

Each worker is a whole router, as with one worker: its own process, admin socket, pid file,
standby, SCM_RIGHTS handover on `zerodown router restart`, and a restart after kill -9 that
serves the listening socket the dead one served (the driver keeps a copy, so connections the
kernel queued on it wait instead of being reset). They share the state file (the newest table
is what a new worker loads). `RouterWorkers` drives them as one router:

- a route table is applied when every worker answered that it runs it (routes_applied);
  a hold is on when every worker holds (one that cannot is released on the others);
- counters, per-backend load and per-request samples are merged, so the analysis sees every
  request once.

Changing `router.workers` from 1 to more needs the router stopped first (`zerodown down`): a
socket bound without SO_REUSEPORT cannot share its port, and binding fresh sockets to swap it
would reset the connections queued on the old one. Fewer workers than before: the extra ones
are stopped gracefully by the next start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import SpecError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.paths import Paths
from zerodown.routers.proxy.driver import BuiltinRouter
from zerodown.routers.proxy.stats import merge_answers
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.router")

T = TypeVar("T")


class RouterWorkers:
    def __init__(self, *, paths: Paths, spec: Spec, count: int) -> None:
        self.paths = paths
        self.spec = spec
        self.workers = [
            BuiltinRouter(paths=paths, spec=spec, worker=n, workers=count) for n in range(count)
        ]
        self._strays_stopped = False

    async def _each(self, call: Callable[[BuiltinRouter], Awaitable[T]]) -> list[T]:
        """`call` on every worker at once; the first failure is raised once all have ended."""
        results = await asyncio.gather(*(call(w) for w in self.workers), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]  # no exception left among them

    # --- the processes -----------------------------------------------------------------------

    async def start(self) -> None:
        if not self._strays_stopped:
            await self._stop_strays()
        first, *others = self.workers
        await first.start()
        if others:
            self._check_shared(first)
        # One after the other: each binds its own socket in the port's group the first time.
        for w in others:
            await w.start()

    def _check_shared(self, first: BuiltinRouter) -> None:
        held = first._held.get("listen")
        if held is not None and not held.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
            raise SpecError(
                f"the router running on {self.spec.router.listen} was started with one worker:"
                " its socket cannot share the port. Stop it (`zerodown down`), then `zerodown"
                " up` starts the workers",
                field="router.workers",
            )

    async def _stop_strays(self) -> None:
        """Stop the workers a larger `router.workers` left running (gracefully)."""
        count = len(self.workers)
        for pid_file in self.paths.router_worker_pids():
            try:
                n = int(pid_file.stem.removeprefix("router-w"))
            except ValueError:
                continue
            if n >= count:
                stray = BuiltinRouter(paths=self.paths, spec=self.spec, worker=n, workers=n + 1)
                log.info("stopping %s: router.workers is %d now", stray.name, count)
                await stray.stop(grace=30.0)
                await stray.client.aclose()
        self._strays_stopped = True

    async def restart(self) -> dict[str, Any]:
        """Each worker in turn hands its own sockets to a successor (handover.py)."""
        done = [await w.restart() for w in self.workers]
        return {**done[0], "workers": done}

    async def stop(self, *, grace: float) -> None:
        await self._each(lambda w: w.stop(grace=grace))

    async def aclose(self) -> None:
        await self._each(lambda w: w.aclose())

    def pid(self) -> int | None:
        return self.workers[0].pid()

    # --- the admin API, fanned out -----------------------------------------------------------

    async def healthy(self) -> bool:
        return all(await self._each(lambda w: w.healthy()))

    async def apply(self, table: RouteTable) -> None:
        await self._each(lambda w: w.apply(table))

    async def table(self) -> RouteTable:
        return await self.workers[0].table()

    async def verify(self, table: RouteTable) -> bool | None:
        return all_known(await self._each(lambda w: w.verify(table)))

    async def backends(self) -> dict[str, BackendLoad]:
        return merge_backends(await self._each(lambda w: w.backends()))

    async def stats(self) -> dict[str, ReleaseStats]:
        return merge_stats(await self._each(lambda w: w.stats()))

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        return merge_samples(await self._each(lambda w: w.samples(release, since)))

    async def close_tunnels(self, address: str) -> int:
        return sum(await self._each(lambda w: w.close_tunnels(address)))

    async def hold(self, seconds: float) -> dict[str, Any]:
        results = await asyncio.gather(
            *(w.hold(seconds) for w in self.workers), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # All or none: a worker left holding alone would answer 503 when its hold lapses.
            for w, r in zip(self.workers, results, strict=True):
                if not isinstance(r, BaseException):
                    await w.release()
            raise failed[0]
        return merge_answers(r for r in results if not isinstance(r, BaseException))

    async def release(self) -> dict[str, Any]:
        return merge_answers(await self._each(lambda w: w.release()))


# --- merging (pure) ----------------------------------------------------------------------------


def all_known(answers: Iterable[bool | None]) -> bool | None:
    """Every worker runs the table: True; one does not: False; else (one unknown) None."""
    answers = list(answers)
    if False in answers:
        return False
    return None if None in answers else True


def merge_stats(parts: Iterable[dict[str, ReleaseStats]]) -> dict[str, ReleaseStats]:
    merged: dict[str, ReleaseStats] = {}
    for part in parts:
        for name, s in part.items():
            m = merged.get(name)
            merged[name] = s if m is None else add_stats(m, s)
    return merged


def add_stats(a: ReleaseStats, b: ReleaseStats) -> ReleaseStats:
    width = max(len(a.latency_counts), len(b.latency_counts))
    counts = [0] * width
    for c in (a.latency_counts, b.latency_counts):
        for i, n in enumerate(c):
            counts[i] += n
    return ReleaseStats(
        requests=a.requests + b.requests,
        responses_4xx=a.responses_4xx + b.responses_4xx,
        responses_5xx=a.responses_5xx + b.responses_5xx,
        transport_errors=a.transport_errors + b.transport_errors,
        latency_sum=a.latency_sum + b.latency_sum,
        latency_counts=tuple(counts),
    )


def merge_backends(parts: Iterable[dict[str, BackendLoad]]) -> dict[str, BackendLoad]:
    merged: dict[str, BackendLoad] = {}
    for part in parts:
        for address, b in part.items():
            m = merged.get(address)
            merged[address] = (
                b
                if m is None
                else BackendLoad(
                    release=m.release,
                    inflight=m.inflight + b.inflight,
                    requests=m.requests + b.requests,
                    tunnels=m.tunnels + b.tunnels,
                )
            )
    return merged


def merge_samples(parts: Iterable[Sequence[Sample]]) -> list[Sample]:
    """Every worker's samples, in time order (each worker's are in order already)."""
    return sorted((s for part in parts for s in part), key=lambda s: s[0])
