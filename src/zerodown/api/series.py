"""The dashboard's charts: request rate, error rate and p99 latency per release over the rollout,
with each analysis threshold and each decision on the time axis.

Built from the router's per-request samples (the same ones the analysis judges read), bucketed
on the controller so the page draws a few hundred points, not every request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Query

from zerodown.core.analysis.stats import Sample, is_error, quantile
from zerodown.spec.model import Spec

MAX_POINTS = 300
"""At most this many buckets per chart: the step grows with the window."""
WINDOW_MAX = 3600.0
"""At most the last hour of a rollout is drawn."""
CHARTED = {"request_rate": "rate", "error_rate": "errors", "latency_p99": "p99"}
MARKED = ("deploy", "step", "pause", "promote", "switch", "complete", "aborted", "failed")
_THRESHOLD = re.compile(r"^\s*result\s*(>=|>|<=|<)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*$")


def buckets(samples: Mapping[str, Sequence[Sample]], *, start: float, end: float) -> dict[str, Any]:
    """Per release and per bucket: requests per second, error share, p99 latency (None where a
    bucket had no request)."""
    span = max(end - start, 1.0)
    step = max(1.0, math.ceil(span / MAX_POINTS))
    n = max(1, math.ceil(span / step))
    out: dict[str, Any] = {"start": start, "step": step, "releases": {}}
    for release, rows in samples.items():
        slots: list[list[Sample]] = [[] for _ in range(n)]
        for sample in rows:
            i = int((sample[0] - start) // step)
            if 0 <= i < n:
                slots[i].append(sample)
        out["releases"][release] = {
            "rate": [len(s) / step for s in slots],
            "errors": [sum(1 for x in s if is_error(x[2])) / len(s) if s else None for s in slots],
            "p99": [quantile(sorted(x[1] for x in s), 0.99) if s else None for s in slots],
        }
    return out


def thresholds(spec: Spec | None) -> list[dict[str, Any]]:
    """Lines to draw: the router metrics whose condition is a plain `result > N` (or <, >=, <=)."""
    if spec is None or spec.analysis is None:
        return []
    lines = []
    for template, body in spec.analysis.templates.items():
        for metric in body.metrics:
            chart = CHARTED.get(metric.query or "")
            if metric.provider_kind != "router" or chart is None:
                continue
            for which, condition in (
                ("fails", metric.failure_condition),
                ("passes", metric.success_condition),
            ):
                match = _THRESHOLD.match(condition or "")
                if match:
                    lines.append(
                        {
                            "chart": chart,
                            "value": float(match.group(2)),
                            "label": f"{template}/{metric.name} {which} when {condition}",
                        }
                    )
    return lines


def make_series_router(controller: Any, dependencies: Sequence[Any]) -> APIRouter:
    """GET /api/series: the charts of the current (or last) rollout."""
    router = APIRouter()

    @router.get("/api/series", dependencies=list(dependencies))
    async def series(
        window: float = Query(
            600.0, gt=0, le=WINDOW_MAX, description="seconds before now, at most"
        ),
    ) -> dict[str, Any]:
        status = controller.status()
        now = controller.clock.now()
        rollout = status.rollout
        start = max(now - window, rollout.started_at - 5 if rollout else now - window)
        releases = [r for r in (status.stable, rollout.version if rollout else None) if r]
        source = controller.engine.check_tasks.stats_source
        samples = (
            {r: await source.samples(r, start) for r in dict.fromkeys(releases)}
            if source is not None
            else {}
        )
        events = [
            {"at": e.at, "kind": e.kind, "message": e.message}
            for e in controller.store.events(controller.service, limit=200)
            if e.kind in MARKED and e.at >= start
        ]
        return {
            **buckets(samples, start=start, end=now),
            "stable": status.stable,
            "canary": rollout.version if rollout and rollout.version != status.stable else None,
            "thresholds": thresholds(controller.engine.current_spec(status)),
            "decisions": events,
            "now": now,
        }

    return router
