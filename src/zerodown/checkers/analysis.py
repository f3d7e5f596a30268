"""Run an analysis: take measurements when they are due, and say what they add up to.

Two ways to drive it, over the same state:

- `await runner.run()` measures at each metric's interval until the run completes (or is
  cancelled: cancel the task and every in-flight measurement stops at once, commands killed),
  calling `on_update` after every round of measurements so the caller can persist and act;
- `await runner.step()` takes only the measurements due now and returns the assessment; an
  engine that reconciles in passes calls it each pass and stores `runner.state.to_json()`.
  After a controller restart, `AnalysisRunner(..., state=RunState.from_json(saved))` resumes
  where the stored measurements left off.

All decisions come from `zerodown.core.analysis.assess`; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace

from zerodown.core.analysis.assess import RunResult, assess_run
from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Measurement, RunState
from zerodown.metrics.base import Registry, default_registry, measure
from zerodown.spec.analysis import MetricSpec, ResolvedAnalysis

UpdateCallback = Callable[[RunResult, RunState], Awaitable[None] | None]

DEFAULT_WINDOW = 60.0
"""Without `window`, a router measurement covers the run so far, but at most this long: the
router keeps 20,000 samples per release, about a minute at 300 requests per second."""

MAX_SLEEP = 5.0
"""Longest nap between checks, so a terminate() or a clock jump is noticed soon anyway."""


class AnalysisRunner:
    def __init__(
        self,
        metrics: Sequence[MetricSpec] | ResolvedAnalysis,
        ctx: AnalysisContext,
        *,
        dry_run: Iterable[str] = (),
        state: RunState | None = None,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        on_update: UpdateCallback | None = None,
    ) -> None:
        if isinstance(metrics, ResolvedAnalysis):
            dry_run = {*dry_run, *metrics.dry_run}
            metrics = metrics.metrics
        self.metrics = list(metrics)
        self.ctx = ctx
        self.dry_run = frozenset(dry_run)
        self.clock = clock
        self.state = state if state is not None else RunState(started_at=clock())
        self.registry = registry or default_registry()
        self.on_update = on_update
        self._wake = asyncio.Event()

    def assess(self, now: float | None = None) -> RunResult:
        return assess_run(
            self.metrics, self.state, self.clock() if now is None else now, dry_run=self.dry_run
        )

    def terminate(self) -> None:
        """End open-ended metrics (a background analysis whose rollout is done)."""
        self.state = self.state.terminating()
        self._wake.set()

    async def step(self, now: float | None = None) -> RunResult:
        """Take the measurements due now (concurrently); return the assessment after them."""
        now = self.clock() if now is None else now
        result = self.assess(now)
        if result.completed or not result.due:
            return result
        by_name = {m.name: m for m in self.metrics}
        due = [by_name[name] for name in result.due]
        taken = await asyncio.gather(*(self._measure(metric, now) for metric in due))
        for metric, measurement in zip(due, taken, strict=True):
            self.state = self.state.adding(metric.name, measurement)
        result = self.assess()
        if self.on_update is not None:
            outcome = self.on_update(result, self.state)
            if inspect.isawaitable(outcome):
                await outcome
        return result

    async def run(self) -> RunResult:
        """Measure until the run completes; returns the final result."""
        while True:
            result = await self.step()
            if result.completed:
                return result
            now = self.clock()
            delay = MAX_SLEEP if result.next_at is None else result.next_at - now
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, MAX_SLEEP)):
                        await self._wake.wait()

    async def _measure(self, metric: MetricSpec, now: float) -> Measurement:
        window = DEFAULT_WINDOW if metric.window is None else metric.window
        start = max(self.state.started_at, now - window)
        ctx = replace(self.ctx, window_start=start, now=now)
        if metric.sequential is not None:
            # a sequential judge goes on from where its last look stopped (also after a restart)
            states = [m.state for m in self.state.of(metric.name) if m.state is not None]
            last = states[-1] if states else None
            ctx = replace(ctx, window_start=self.state.started_at, judge_state=last)
        return await measure(metric, ctx, registry=self.registry)


RunUpdate = Callable[[str, RunResult, RunState], Awaitable[None] | None]


class Analyses:
    """The analysis runs of one service, each a background task under a key of the caller's.

    The engine calls `ensure` on every reconcile pass for each analysis the rollout needs now
    (e.g. key "r12/step-1" for an inline step, "r12/background" for a background one), passing
    the state it stored, and reads `result(key)`; `on_update` gets every new result and state so
    the engine can persist them and wake its loop. Calling `ensure` again for a running key does
    nothing, so a pass need not remember what it started; after a restart the first pass starts
    each run again from its stored state.
    """

    def __init__(self, *, on_update: RunUpdate | None = None, registry: Registry | None = None):
        self.on_update = on_update
        self.registry = registry or default_registry()
        self._runners: dict[str, AnalysisRunner] = {}
        self._tasks: dict[str, asyncio.Task[RunResult]] = {}
        self._results: dict[str, RunResult] = {}

    def ensure(
        self,
        key: str,
        analysis: ResolvedAnalysis | Sequence[MetricSpec],
        ctx: AnalysisContext,
        *,
        state: RunState | None = None,
    ) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.done():
            return
        if key in self._results and self._results[key].completed:
            return

        async def report(result: RunResult, run_state: RunState) -> None:
            self._results[key] = result
            if self.on_update is not None:
                outcome = self.on_update(key, result, run_state)
                if inspect.isawaitable(outcome):
                    await outcome

        runner = AnalysisRunner(
            analysis, ctx, state=state, registry=self.registry, on_update=report
        )
        self._runners[key] = runner
        self._results[key] = runner.assess()
        self._tasks[key] = asyncio.get_running_loop().create_task(
            runner.run(), name=f"analysis {key}"
        )

    def result(self, key: str) -> RunResult | None:
        return self._results.get(key)

    def state(self, key: str) -> RunState | None:
        runner = self._runners.get(key)
        return None if runner is None else runner.state

    def terminate(self, key: str) -> None:
        """End a background analysis's open-ended metrics (the rollout is done with it)."""
        runner = self._runners.get(key)
        if runner is not None:
            runner.terminate()

    async def cancel(self, key: str) -> None:
        """Stop at once (abort, or a newer rollout): in-flight measurements are dropped."""
        task = self._tasks.pop(key, None)
        self._runners.pop(key, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        for key in list(self._tasks):
            await self.cancel(key)

    def keys(self) -> list[str]:
        return [k for k, t in self._tasks.items() if not t.done()]
