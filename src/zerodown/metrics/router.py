"""The built-in router as a metric provider: per-release rates and latencies, no set-up.

The router driver keeps per-request samples; this provider asks for those of the canary (and,
with compare: baseline, of the stable release) over the measurement's window and computes the
query from them. It reaches the router only through `ctx.stats_source` (drivers do not import
each other).

A metric with a sequential judge reads, at each look, only the requests since its last one and
hands them to the judge (zerodown.core.analysis.sequential_look).
"""

from __future__ import annotations

import time
from collections import deque

from zerodown.core.analysis.context import AnalysisContext, StatsSource
from zerodown.core.analysis.evaluate import Observed, measurement
from zerodown.core.analysis.judge import JudgeResult, judge
from zerodown.core.analysis.model import Measurement, error
from zerodown.core.analysis.sequential_look import cursors, look, measurement_of
from zerodown.core.analysis.stats import Reading, counted_rate, judge_samples, window_stats
from zerodown.spec.analysis import MetricSpec

READINGS = 1024  # counter readings kept per release for request_rate (one per measurement)
RELEASES_READ = 64  # releases whose readings are kept (a long-lived controller sees many)


class RouterProvider:
    def __init__(self) -> None:
        # request_rate: each release's cumulative request count at each measurement, per stats
        # source (another router counts apart), so that a window's rate comes from the counters
        # (stats.counted_rate)
        self._readings: dict[tuple[int, str], deque[Reading]] = {}

    async def _request_rate(
        self, source: StatsSource, release: str, start: float, now: float
    ) -> float | None:
        """The release's request rate over [start, now] from its counters, None until a
        reading as old as the window's start exists (the samples answer meanwhile)."""
        counters = (await source.stats()).get(release)
        if counters is None:
            return None
        key = (id(source), release)
        if key not in self._readings and len(self._readings) >= RELEASES_READ:
            del self._readings[next(iter(self._readings))]  # the release first read the longest ago
        readings = self._readings.setdefault(key, deque(maxlen=READINGS))
        rate = counted_rate(readings, start, (now, counters.requests))
        readings.append((now, counters.requests))
        return rate

    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        started = time.time()
        source = ctx.stats_source
        if source is None:
            return error(started, time.time(), "no router stats source was given to the analysis")
        if metric.sequential is not None:
            return await _sequential_look(metric, ctx, source, started)
        assert metric.query is not None
        start, end = ctx.window_start, ctx.now
        canary_samples = list(await source.samples(ctx.canary, start))
        canary = window_stats(canary_samples, start, end)
        value = canary.value(metric.query)
        if metric.query == "request_rate":
            counted = await self._request_rate(source, ctx.canary, start, end)
            value = value if counted is None else counted
        observed = Observed(
            value=value,
            samples=canary.requests,
            note="" if value is not None else f"no requests to {ctx.canary} in the window",
        )
        if metric.compare == "baseline":
            if not ctx.stable:
                return error(
                    started, time.time(), "compare: baseline, but there is no stable release"
                )
            stable_samples = list(await source.samples(ctx.stable, start))
            stable = window_stats(stable_samples, start, end)
            judged: JudgeResult | None = None
            if metric.judge is not None and metric.judge.mann_whitney is not None:
                spec = metric.judge.mann_whitney
                judged = judge(
                    judge_samples(canary_samples, metric.query, start, end),
                    judge_samples(stable_samples, metric.query, start, end),
                    confidence=spec.confidence,
                    allowed_effect=spec.allowed_effect,
                )
            baseline = stable.value(metric.query)
            if metric.query == "request_rate":
                counted = await self._request_rate(source, ctx.stable, start, end)
                baseline = baseline if counted is None else counted
            observed = Observed(
                value=value,
                baseline=baseline,
                samples=canary.requests,
                baseline_samples=stable.requests,
                judged=judged,
                note=observed.note,
            )
        return measurement(metric, observed, started_at=started, finished_at=time.time())


async def _sequential_look(
    metric: MetricSpec, ctx: AnalysisContext, source: StatsSource, started: float
) -> Measurement:
    """Only the requests since the last look (the cursors in the judge's state) are read."""
    assert metric.sequential is not None
    if not ctx.stable:
        return error(started, time.time(), "a sequential judge needs a stable release to compare")
    canary_since, baseline_since = cursors(ctx.judge_state, ctx.window_start)
    canary = await source.samples(ctx.canary, canary_since)
    baseline = await source.samples(ctx.stable, baseline_since)
    outcome, state = look(
        metric.sequential, ctx.judge_state, canary, baseline, start=ctx.window_start
    )
    return measurement_of(outcome, state, started_at=started, finished_at=time.time())
