"""The built-in router as a metric provider: per-release rates and latencies, no set-up.

The router driver keeps per-request samples; this provider asks for those of the canary (and,
with compare: baseline, of the stable release) over the measurement's window and computes the
query from them. It reaches the router only through `ctx.stats_source` (drivers do not import
each other).
"""

from __future__ import annotations

import time

from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.evaluate import Observed, measurement
from zerodown.core.analysis.judge import JudgeResult, judge
from zerodown.core.analysis.model import Measurement, error
from zerodown.core.analysis.stats import judge_samples, window_stats
from zerodown.spec.analysis import MetricSpec


class RouterProvider:
    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        started = time.time()
        source = ctx.stats_source
        if source is None:
            return error(started, time.time(), "no router stats source was given to the analysis")
        assert metric.query is not None
        start, end = ctx.window_start, ctx.now
        canary_samples = list(await source.samples(ctx.canary, start))
        canary = window_stats(canary_samples, start, end)
        value = canary.value(metric.query)
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
            if metric.judge is not None:
                spec = metric.judge.mann_whitney
                judged = judge(
                    judge_samples(canary_samples, metric.query, start, end),
                    judge_samples(stable_samples, metric.query, start, end),
                    confidence=spec.confidence,
                    allowed_effect=spec.allowed_effect,
                )
            observed = Observed(
                value=value,
                baseline=stable.value(metric.query),
                samples=canary.requests,
                baseline_samples=stable.requests,
                judged=judged,
                note=observed.note,
            )
        return measurement(metric, observed, started_at=started, finished_at=time.time())
