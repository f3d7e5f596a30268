"""A web endpoint as a metric provider: GET a URL and take a number from its JSON body."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.evaluate import Observed, measurement
from zerodown.core.analysis.model import Measurement, error
from zerodown.metrics.base import tail
from zerodown.spec.analysis import MetricSpec, ProviderChoice


class WebProvider:
    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        started = time.time()
        assert isinstance(metric.provider, ProviderChoice) and metric.provider.web
        spec = metric.provider.web
        url = ctx.substitute(spec.url)
        headers = {k: ctx.substitute(v) for k, v in spec.headers.items()}
        try:
            async with httpx.AsyncClient(timeout=metric.timeout) as client:
                response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            return error(started, time.time(), f"GET {url}: {type(exc).__name__}: {exc}")
        if not response.is_success:
            return error(
                started,
                time.time(),
                f"GET {url}: HTTP {response.status_code}: {tail(response.text)}",
            )
        try:
            value = pick_number(response.text, spec.json_path)
        except ValueError as exc:
            return error(started, time.time(), f"GET {url}: {exc}")
        return measurement(
            metric, Observed(value=value), started_at=started, finished_at=time.time()
        )


def pick_number(body: str, path: str | None) -> float:
    """The number at a dotted path of a JSON body ("data.items.0.value"); the body if no path."""
    try:
        node: Any = json.loads(body)
    except ValueError:
        raise ValueError(f"the body is not JSON: {tail(body, 120)}") from None
    walked: list[str] = []
    for part in path.split(".") if path else []:
        walked.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"the body has no {'.'.join(walked)!r}")
    if isinstance(node, bool):
        return 1.0 if node else 0.0
    if isinstance(node, int | float):
        return float(node)
    if isinstance(node, str):
        try:
            return float(node)
        except ValueError:
            pass
    where = f" at {path!r}" if path else ""
    raise ValueError(f"expected a number{where}, found {json.dumps(node)[:120]}")
