"""Prometheus as a metric provider: an instant query over its HTTP API.

The query may use {canary}, {stable} and {service}. The result must be a scalar or a vector;
the first sample is the value (an empty vector or NaN means no data: inconclusive). With
compare: baseline the same query runs again with the stable release in {canary}'s place.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.evaluate import Observed, measurement
from zerodown.core.analysis.model import Measurement, error
from zerodown.metrics.base import tail
from zerodown.spec.analysis import MetricSpec, ProviderChoice


class QueryError(Exception):
    pass


class PrometheusProvider:
    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        started = time.time()
        assert isinstance(metric.provider, ProviderChoice) and metric.provider.prometheus
        spec = metric.provider.prometheus
        assert metric.query is not None
        url = spec.address.rstrip("/") + "/api/v1/query"
        async with httpx.AsyncClient(timeout=metric.timeout, headers=spec.headers) as client:
            try:
                value, note = await _query(client, url, ctx.substitute(metric.query))
                baseline: float | None = None
                if metric.compare == "baseline":
                    if not ctx.stable:
                        raise QueryError("compare: baseline, but there is no stable release")
                    baseline, _ = await _query(
                        client, url, ctx.as_baseline().substitute(metric.query)
                    )
            except QueryError as exc:
                return error(started, time.time(), f"prometheus at {spec.address}: {exc}")
            except httpx.HTTPError as exc:
                return error(
                    started,
                    time.time(),
                    f"prometheus at {spec.address}: {type(exc).__name__}: {exc}",
                )
        observed = Observed(value=value, baseline=baseline, note=note)
        return measurement(metric, observed, started_at=started, finished_at=time.time())


async def _query(client: httpx.AsyncClient, url: str, query: str) -> tuple[float | None, str]:
    response = await client.get(url, params={"query": query})
    try:
        body: Any = response.json()
    except ValueError:
        raise QueryError(f"HTTP {response.status_code}, not JSON: {tail(response.text)}") from None
    if response.status_code != 200 or body.get("status") != "success":
        raise QueryError(f"HTTP {response.status_code}: {body.get('error') or tail(response.text)}")
    data = body.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        raw = result[1]
    elif kind == "vector":
        if not result:
            return None, f"the query returned no data: {query}"
        raw = result[0]["value"][1]
    else:
        raise QueryError(f"the query gives a {kind}; it must give a scalar or an instant vector")
    value = float(raw)
    if math.isnan(value):
        return None, f"the query gave NaN (no data yet?): {query}"
    return value, ""
