"""The router metric `request_rate` from the release's counters, through the access-log
collector a HAProxy with a sampled log feeds (routers/accesslog.py): the samples are one per
logged line, the counters count each line by its weight."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerodown.core.analysis.context import AnalysisContext
from zerodown.metrics.router import RouterProvider
from zerodown.routers.accesslog import AccessLog
from zerodown.spec.analysis import MetricSpec

pytestmark = pytest.mark.anyio


async def test_a_sampled_log_gives_the_rate_of_every_request(tmp_path: Path) -> None:
    now = [0.0]
    log = AccessLog(tmp_path / "a", clock=lambda: now[0], transport="file")
    metric = MetricSpec.model_validate(
        {"name": "busy", "query": "request_rate", "success_condition": "result > 0"}
    )
    provider = RouterProvider()

    async def measure(at: float) -> float | None:
        ctx = AnalysisContext("shop", "v2", stats_source=log, window_start=at - 10.0, now=at)
        return (await provider.measure(metric, ctx)).value

    for second in range(1, 21):  # 20 s of one line a second that stands for 32 requests
        now[0] = float(second)
        log.receive_many([b"zd2 32 v2 200 3 - 127.0.0.1:9001"])
        if second == 10:
            # no reading as old as the window's start yet: the samples' rate, the lines'
            assert await measure(10.0) == pytest.approx(1.0, rel=0.15)
    # from the counters read at 10 s: 10 lines of 32 in 10 s
    assert await measure(20.0) == pytest.approx(32.0)
