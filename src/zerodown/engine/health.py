"""Probes with Kubernetes semantics, one monitor task per live instance.

startup runs first (once per instance) and gates the others; its failure_threshold consecutive
failures mark the instance failed. Then readiness turns the instance ready after success_threshold
consecutive successes and unready after failure_threshold consecutive failures; liveness marks it
failed (to be replaced) after failure_threshold consecutive failures.

A monitor keeps what it concluded (`started`, `ready`, `ready_since`, `failure`) and the engine
copies it into the store on every pass: a report is a wake-up call, not the only record, so one
lost to a store that could not be written (locked, full) is written by the next pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from zerodown.probes.checks import check
from zerodown.spec.model import ProbeSpec, ProbesSpec

Report = Callable[[str, str, object], None]  # (instance id, event, value)


class Monitor:
    def __init__(
        self,
        *,
        instance_id: str,
        address: str,
        probes: ProbesSpec,
        cwd: Path,
        env: dict[str, str],
        started: bool,
        ready: bool,
        ready_since: float | None,
        report: Report,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance_id = instance_id
        self.address = address
        self.probes = probes
        self.cwd = cwd
        self.env = env
        self.started = started
        self.ready = ready
        self.ready_since = ready_since if ready else None
        self.failure: str | None = None
        self.report = report
        self.clock = clock
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"probe {self.instance_id}")

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _check(self, probe: ProbeSpec) -> tuple[bool, str]:
        result = await check(probe, self.address, cwd=self.cwd, env=self.env)
        return result.ok, result.message

    async def _run(self) -> None:
        if not self.started:
            startup = self.probes.startup
            if startup is not None and not await self._startup(startup):
                return
            self.started = True
            self.report(self.instance_id, "started", True)
        loops = [self._readiness(self.probes.readiness)]
        if self.probes.liveness is not None:
            loops.append(self._liveness(self.probes.liveness))
        await asyncio.gather(*loops)

    async def _startup(self, probe: ProbeSpec) -> bool:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok, message = await self._check(probe)
            if ok:
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                self._fail(f"startup probe failed {failures} times: {message}")
                return False
            await asyncio.sleep(probe.period)

    async def _readiness(self, probe: ProbeSpec) -> None:
        await asyncio.sleep(probe.initial_delay)
        successes = failures = 0
        while True:
            ok, message = await self._check(probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not self.ready and successes >= probe.success_threshold:
                self.ready, self.ready_since = True, self.clock()
                self.report(self.instance_id, "ready", True)
            elif self.ready and failures >= probe.failure_threshold:
                self.ready, self.ready_since = False, None
                self.report(self.instance_id, "ready", f"readiness probe failed: {message}")
            # While not ready, look often: a new instance should not wait a whole period for
            # traffic. Failures still count only at failure_threshold, as in Kubernetes.
            await asyncio.sleep(probe.period if self.ready else min(probe.period, 0.25))

    async def _liveness(self, probe: ProbeSpec) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            ok, message = await self._check(probe)
            failures = 0 if ok else failures + 1
            if failures >= probe.failure_threshold:
                self._fail(f"liveness probe failed {failures} times: {message}")
                return
            await asyncio.sleep(probe.period)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.ready, self.ready_since = False, None
        self.report(self.instance_id, "failed", reason)
