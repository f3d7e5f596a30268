"""Probes with Kubernetes semantics, one monitor task per live instance.

startup runs first (once per instance) and gates the others; its failure_threshold consecutive
failures mark the instance failed. Then readiness turns the instance ready after success_threshold
consecutive successes and unready after failure_threshold consecutive failures; liveness marks it
failed (to be replaced) after failure_threshold consecutive failures.

A monitor keeps what it concluded (`started`, `ready`, `ready_since`, `failure`) and the engine
copies it into the store on every pass: a report is a wake-up call, not the only record, so one
lost to a store that could not be written (locked, full) is written by the next pass.

A monitor knows nothing of how a probe reaches its instance (`check`, a Prober's, does), and waits
only through the engine's clock, so a test can drive it on fake time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from zerodown.engine.clock import SYSTEM_CLOCK, Clock
from zerodown.probes.checks import ProbeResult
from zerodown.spec.model import ProbeSpec, ProbesSpec

Report = Callable[[str, str, object], None]  # (instance id, event, value)
Check = Callable[[ProbeSpec], Awaitable[ProbeResult]]  # one attempt against this instance


class Monitor:
    def __init__(
        self,
        *,
        instance_id: str,
        probes: ProbesSpec,
        check: Check,
        started: bool,
        ready: bool,
        ready_since: float | None,
        report: Report,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.instance_id = instance_id
        self.probes = probes
        self.check = check
        self.started = started
        self.ready = ready
        self.ready_since = ready_since if ready else None
        self.failure: str | None = None
        self.report = report
        self.clock = clock
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._spawn(self._run(), "startup")

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    def _spawn(self, loop: Coroutine[Any, Any, None], probe: str) -> None:
        name = f"{probe} probe {self.instance_id}"
        self.tasks.append(asyncio.create_task(loop, name=name))

    async def _check(self, probe: ProbeSpec) -> tuple[bool, str]:
        result = await self.check(probe)
        return result.ok, result.message

    async def _run(self) -> None:
        if not self.started:
            startup = self.probes.startup
            if startup is not None and not await self._startup(startup):
                return
            self.started = True
            self.report(self.instance_id, "started", True)
        # Side by side, each in its own task: nothing waits on them but `cancel`.
        self._spawn(self._readiness(self.probes.readiness), "readiness")
        if self.probes.liveness is not None:
            self._spawn(self._liveness(self.probes.liveness), "liveness")

    async def _startup(self, probe: ProbeSpec) -> bool:
        await self.clock.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok, message = await self._check(probe)
            if ok:
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                self._fail(f"startup probe failed {failures} times: {message}")
                return False
            await self.clock.sleep(probe.period)

    async def _readiness(self, probe: ProbeSpec) -> None:
        await self.clock.sleep(probe.initial_delay)
        successes = failures = 0
        while True:
            ok, message = await self._check(probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not self.ready and successes >= probe.success_threshold:
                self.ready, self.ready_since = True, self.clock.now()
                self.report(self.instance_id, "ready", True)
            elif self.ready and failures >= probe.failure_threshold:
                self.ready, self.ready_since = False, None
                self.report(self.instance_id, "ready", f"readiness probe failed: {message}")
            # While not ready, look often: a new instance should not wait a whole period for
            # traffic. Failures still count only at failure_threshold, as in Kubernetes.
            await self.clock.sleep(probe.period if self.ready else min(probe.period, 0.25))

    async def _liveness(self, probe: ProbeSpec) -> None:
        await self.clock.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok, message = await self._check(probe)
            failures = 0 if ok else failures + 1
            if failures >= probe.failure_threshold:
                self._fail(f"liveness probe failed {failures} times: {message}")
                return
            await self.clock.sleep(probe.period)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.ready, self.ready_since = False, None
        self.report(self.instance_id, "failed", reason)
