"""Time that moves only when a test moves it, for the engine (`zerodown.engine.clock.Clock`).

`sleep` parks the calling task until `advance` passes its deadline. `advance` wakes sleepers in
deadline order and, after each, lets every task run until it sleeps on this clock again or ends
(`settle`), so a probe monitor or a retirement has done all it would do by that time before the
test looks. A task that neither ends nor sleeps on the clock (it waits on real I/O, or real time)
fails `settle` with its name: in the fake world nothing may wait on anything real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

SETTLE_TURNS = 10_000  # event-loop turns `settle` allows before it calls a task stuck


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._asleep: dict[asyncio.Task[object], asyncio.Future[None]] = {}
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), wake))
        task = asyncio.current_task()
        assert task is not None
        self._asleep[task] = wake
        try:
            await wake
        finally:
            del self._asleep[task]

    async def settle(self) -> None:
        """Let every other task run until it sleeps on this clock or ends."""
        me = asyncio.current_task()
        for _ in range(SETTLE_TURNS):
            busy = [
                t
                for t in asyncio.all_tasks()
                if t is not me and not t.done() and not self._sleeping(t)
            ]
            if not busy:
                return
            await asyncio.sleep(0)
        names = ", ".join(sorted(t.get_name() for t in busy))
        raise AssertionError(f"tasks neither ended nor slept on the fake clock: {names}")

    def _sleeping(self, task: asyncio.Task[object]) -> bool:
        """Parked on this clock (woken ones count as busy until they have run)."""
        wake = self._asleep.get(task)
        return wake is not None and not wake.done()

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, waking each sleeper at its own deadline."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, wake = heapq.heappop(self._sleepers)
            if wake.done():  # its task was cancelled meanwhile
                continue
            self._now = max(self._now, deadline)
            wake.set_result(None)
            await self.settle()
        self._now = target
