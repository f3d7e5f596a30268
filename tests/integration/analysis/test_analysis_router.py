"""Analysis through the built-in router, under load on 127.0.0.1: real router, real releases.

Stable (v1) and canary (v2) are separate backend processes behind one router process; a load
loop sends requests through the router while the analysis runner reads the router's per-request
samples (`ProxyRouter` is the StatsSource) and decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from analysis_kit import start_prometheus

from support.services import free_port, port_open
from zerodown.checkers.analysis import AnalysisRunner
from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Phase, Verdict
from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.routers.proxy import client as proxy
from zerodown.spec.analysis import MetricSpec

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).parent


def wait_until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def release(fail_every: int = 0, delay_ms: int = 0) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "analysis_backend.py"),
            str(port),
            str(fail_every),
            str(delay_ms),
        ]
    )
    try:
        wait_until(lambda: port_open("127.0.0.1", port), f"a backend on port {port}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Router:
    url: str
    client: Any  # ProxyRouter


@contextlib.asynccontextmanager
async def router(tmp_path: Path, admin_port: int | None = None) -> AsyncIterator[Router]:
    port = free_port()
    socket_path = tmp_path / "admin.sock"
    token_file = tmp_path / "admin-token"
    token_file.write_text("only-for-changes\n")  # reading /metrics needs none
    argv = proxy.router_command(
        listen=f"127.0.0.1:{port}",
        preview_listen=None,
        admin_socket=str(socket_path),
        state_file=str(tmp_path / "state.json"),
        admin_listen=f"127.0.0.1:{admin_port}" if admin_port else None,
        admin_token_file=str(token_file) if admin_port else None,
    )
    log = (tmp_path / "router.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = proxy.ProxyRouter(str(socket_path))
    try:
        deadline = time.monotonic() + 20
        while not (socket_path.exists() and await client.healthy()):
            assert proc.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "the router did not start"
            await asyncio.sleep(0.05)
        yield Router(f"http://127.0.0.1:{port}", client)
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(20)
        log.close()


@dataclass
class Load:
    sent: int = 0
    failed: int = 0


async def drive(
    url: str, stop: asyncio.Event, load: Load, workers: int = 4, pause: float = 0.01
) -> None:
    """Bounded load: a few keep-alive clients, each pausing between requests."""

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = await client.get("/")
                    load.failed += response.status_code >= 500
                except httpx.HTTPError:
                    load.failed += 1
                load.sent += 1
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def analyse(
    tmp_path: Path,
    metrics: list[dict[str, Any]],
    *,
    canary: tuple[int, int],
    weight: int = 30,
    pause: float = 0.01,
    stable_delay: int = 0,
    admin_port: int | None = None,
) -> tuple[Any, Load]:
    specs = [MetricSpec.model_validate(m) for m in metrics]
    with release(0, stable_delay) as stable_addr, release(*canary) as canary_addr:
        async with router(tmp_path, admin_port) as r:
            await r.client.apply(
                RouteTable(
                    generation=1,
                    pools=(
                        Pool("v2", weight, (Backend(canary_addr, "v2-0"),)),
                        Pool("v1", 100 - weight, (Backend(stable_addr, "v1-0"),)),
                    ),
                )
            )
            stop, load = asyncio.Event(), Load()
            traffic = asyncio.create_task(drive(r.url, stop, load, pause=pause))
            ctx = AnalysisContext(service="shop", canary="v2", stable="v1", stats_source=r.client)
            try:
                result = await asyncio.wait_for(AnalysisRunner(specs, ctx).run(), 60)
            finally:
                stop.set()
                await traffic
            return result, load


ERROR_RATE = {
    "name": "error-rate",
    "query": "error_rate",
    "interval": "1s",
    "count": 3,
    "failure_condition": "result > 0.05",
    "min_samples": 20,
}
LATENCY = {
    "name": "latency-vs-baseline",
    "query": "latency_p50",
    "compare": "baseline",
    "max_increase": "100%",
    "interval": "1s",
    "count": 3,
    "min_samples": 20,
}
JUDGE = {
    "name": "latency-judge",
    "query": "latency_p90",
    "compare": "baseline",
    "judge": {"mann_whitney": {"confidence": 0.99, "allowed_effect": 0.75}},
    "interval": "1s",
    "count": 3,
    "min_samples": 20,
}


async def test_a_good_canary_passes(tmp_path: Path) -> None:
    result, load = await analyse(tmp_path, [ERROR_RATE, LATENCY, JUDGE], canary=(0, 0))
    assert result.phase is Phase.SUCCESSFUL, result.reason
    assert load.failed == 0
    assert result.score is not None and result.score.verdict is Verdict.PASS
    samples = [r.last.samples for r in result.metrics if r.last is not None]
    assert all(s is not None and s >= 20 for s in samples)


async def test_a_canary_failing_20_percent_is_failed_at_the_first_measurement(
    tmp_path: Path,
) -> None:
    result, load = await analyse(tmp_path, [ERROR_RATE], canary=(5, 0))
    assert result.phase is Phase.FAILED
    (metric,) = result.metrics
    assert metric.count == 1  # decided at the first measurement, one interval in
    assert re.fullmatch(r"error-rate: 0\.\d+ > 0\.05 \(1 of 1 failed\)", result.reason)
    assert metric.last is not None and 0.1 < (metric.last.value or 0) < 0.3
    assert load.failed > 0


async def test_a_three_times_slower_canary_fails_the_baseline_comparison(tmp_path: Path) -> None:
    # stable answers in ~10 ms, the canary in ~30 ms
    metrics = [
        {**LATENCY, "max_increase": "50%"},
        {**JUDGE, "judge": {"mann_whitney": {"confidence": 0.95, "allowed_effect": 0.6}}},
    ]
    with_stable_delay, _load = await analyse(tmp_path, metrics, canary=(0, 30), stable_delay=10)
    assert with_stable_delay.phase is Phase.FAILED, with_stable_delay.reason
    by_name = {r.name: r for r in with_stable_delay.metrics}
    assert by_name["latency-vs-baseline"].phase is Phase.FAILED
    assert "vs baseline" in by_name["latency-vs-baseline"].message


async def test_too_little_traffic_is_inconclusive_not_a_pass(tmp_path: Path) -> None:
    metric = {**ERROR_RATE, "min_samples": 50}
    result, load = await analyse(tmp_path, [metric], canary=(0, 0), weight=5, pause=0.2)
    assert result.phase is Phase.INCONCLUSIVE, result.reason
    assert "too little traffic" in result.reason
    assert load.failed == 0


CANARY_ERROR_RATIO = (
    'sum(rate(zerodown_requests_total{release="{canary}",code=~"5.."}[5s]))'
    ' / sum(rate(zerodown_requests_total{release="{canary}"}[5s]))'
)


async def test_prometheus_scraping_the_router_decides(tmp_path: Path) -> None:
    """A real Prometheus scrapes the router's admin /metrics; a prometheus metric aborts."""
    admin_port = free_port()
    with start_prometheus([f"127.0.0.1:{admin_port}"], tmp_path) as prometheus:
        metric = {
            "name": "error-ratio",
            "provider": {"prometheus": {"address": prometheus}},
            "query": CANARY_ERROR_RATIO,
            "interval": "1s",
            "count": 20,
            "inconclusive_limit": 10,  # no data until prometheus has two scrapes of the canary
            "failure_condition": "result > 0.05",
        }
        result, load = await analyse(tmp_path, [metric], canary=(5, 0), admin_port=admin_port)
    assert result.phase is Phase.FAILED, result.reason
    assert re.fullmatch(r"error-ratio: 0\.\d+ > 0\.05 \(1 of \d+ failed\)", result.reason)
    (m,) = result.metrics
    assert m.last is not None and 0.1 < (m.last.value or 0) < 0.3
    assert load.failed > 0
