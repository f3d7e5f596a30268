"""The prometheus provider against a real Prometheus scraping a real exporter on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from analysis_kit import Site, serve_site, start_prometheus
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from support.services import free_port
from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Measurement, Phase
from zerodown.metrics.base import measure
from zerodown.spec.analysis import MetricSpec

pytestmark = pytest.mark.anyio

CTX = AnalysisContext(service="shop", canary="v2", stable="v1")


@pytest.fixture(scope="module")
def exporter() -> Iterator[Site]:
    """Each scrape sees 20 new requests per release: v1 fast, v2 slow; and error ratios."""
    with serve_site() as site:
        yield _exporter(site)


def _exporter(site: Site) -> Site:
    registry = CollectorRegistry()
    seconds = Histogram("app_request_seconds", "latency", ["release"], registry=registry)
    errors = Gauge(
        "app_error_ratio", "errors per request", ["release", "service"], registry=registry
    )
    errors.labels("v1", "shop").set(0.01)
    errors.labels("v2", "shop").set(0.2)

    def scrape(_body: bytes) -> tuple[int, bytes]:
        for _ in range(20):
            seconds.labels("v1").observe(0.008)
            seconds.labels("v2").observe(0.3)
        return 200, generate_latest(registry)

    site.route("GET", "/metrics", scrape)
    return site


@pytest.fixture(scope="module")
def prometheus(exporter: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_prometheus([f"127.0.0.1:{exporter.port}"], tmp_path_factory.mktemp("prom")) as url:
        yield url


def prom(address: str, query: str, **fields: object) -> MetricSpec:
    return MetricSpec.model_validate(
        {"name": "p", "provider": {"prometheus": {"address": address}}, "query": query, **fields}
    )


async def until_data(metric: MetricSpec, ctx: AnalysisContext = CTX) -> Measurement:
    """Prometheus needs a few scrapes before a rate() has data: poll, bounded."""
    deadline = time.monotonic() + 30
    while True:
        m = await measure(metric, ctx)
        if not (m.phase is Phase.INCONCLUSIVE and m.insufficient) or time.monotonic() > deadline:
            return m
        await asyncio.sleep(0.5)


P99 = (
    "histogram_quantile(0.99, sum(rate(app_request_seconds_bucket"
    '{release="{canary}"}[10s])) by (le))'
)


@pytest.mark.slow
@pytest.mark.slow  # starts a Prometheus server: the full suite runs it
async def test_a_slow_canary_fails_its_p99(prometheus: str) -> None:
    query = P99
    slow = await until_data(prom(prometheus, query, success_condition="result < 0.2"))
    assert slow.phase is Phase.FAILED, slow.message
    assert slow.value is not None and 0.25 <= slow.value <= 0.5  # inside the (0.25, 0.5] bucket
    fast = await until_data(
        prom(prometheus, query, success_condition="result < 0.2"),
        AnalysisContext(service="shop", canary="v1", stable="v1"),
    )
    assert fast.phase is Phase.SUCCESSFUL, fast.message


@pytest.mark.slow
@pytest.mark.slow  # starts a Prometheus server: the full suite runs it
async def test_compare_with_the_baseline(prometheus: str) -> None:
    metric = prom(
        prometheus,
        'app_error_ratio{release="{canary}", service="{service}"}',
        compare="baseline",
        failure_condition="result > baseline + 0.05",
    )
    m = await until_data(metric)
    assert m.phase is Phase.FAILED, m.message
    assert (m.value, m.baseline) == (0.2, 0.01)
    assert m.message == "0.2 > 0.01 + 0.05"


@pytest.mark.slow  # starts a Prometheus server: the full suite runs it
async def test_no_data_is_inconclusive_and_bad_promql_is_an_error(prometheus: str) -> None:
    m = await measure(prom(prometheus, 'app_error_ratio{release="v9"}'), CTX)
    assert m.phase is Phase.INCONCLUSIVE and "no data" in m.message
    bad = await measure(prom(prometheus, "sum(rate(app_error_ratio[1m]"), CTX)
    assert bad.phase is Phase.ERROR and "HTTP 400" in bad.message


async def test_unreachable_prometheus_is_an_error() -> None:
    m = await measure(prom(f"http://127.0.0.1:{free_port()}", "up"), CTX)
    assert m.phase is Phase.ERROR and "ConnectError" in m.message


@pytest.mark.slow  # starts a Prometheus server: the full suite runs it
def test_prometheus_reads_the_exporter(prometheus: str) -> None:
    # a sanity check of the fixture itself: the target is up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with httpx.Client() as client:
            data = client.get(prometheus + "/api/v1/query", params={"query": "up"}).json()
        if data["data"]["result"]:
            assert data["data"]["result"][0]["value"][1] == "1"
            return
        time.sleep(0.3)
    raise AssertionError("prometheus never scraped the exporter")
