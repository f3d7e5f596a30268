"""The access-log collector that gives HAProxy and nginx the built-in router's RouterStats."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from zerodown.core.analysis.context import StatsSource
from zerodown.core.routes import Backend, Pool, ReleaseStats, RouteTable
from zerodown.routers.accesslog import (
    LINES_CAP,
    POWERS_OF_TWO,
    AccessLog,
    LogLine,
    LogSwitch,
    Sampler,
    in_rollout,
    parse_line,
    plan_weights,
    sampling_weight,
)
from zerodown.routers.nginx.render import SAMPLING_STEPS

pytestmark = pytest.mark.anyio


def test_haproxy_raw_line() -> None:
    assert parse_line(b"zd1 v2 200 3 - 127.0.0.1:9001\n") == LogLine(
        release="v2", status=200, latency=0.003, flags=(), backend="127.0.0.1:9001"
    )


def test_nginx_syslog_line_with_seconds_flags_and_retried_addresses() -> None:
    line = parse_line(
        b"<190>Dec  1 14:53:04 zd: zd1 v2 503 0.250s checkout=new,dark%20mode=on "
        b"127.0.0.1:9001, 127.0.0.1:9002"
    )
    assert line == LogLine(
        release="v2",
        status=503,
        latency=0.25,
        flags=("flag:checkout=new", "flag:dark mode=on"),
        backend="127.0.0.1:9002",
    )
    assert not line.transport_error  # a backend answered the 503


@pytest.mark.parametrize(
    ("raw", "transport_error"),
    [
        (b"zd1 - 503 0 - <NOSRV>:0", True),
        (b"zd1 v1 -1 12 - -:-", True),
        (b"zd1 v1 502 4 - -", True),
        (b"zd1 v1 500 4 - 127.0.0.1:1", False),
    ],
)
def test_no_backend_is_a_transport_error(raw: bytes, transport_error: bool) -> None:
    line = parse_line(raw)
    assert line is not None and line.transport_error is transport_error
    assert line.latency >= 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"GET / HTTP/1.1",
        b"zd1 v1 200 3",  # too few fields
        b"zd1 v1 ok 3 - a:1",
        b"zd1 v1 200 fast - a:1",
        b"zd1 v1 200 nan - a:1",
        b"zd1 v1 1000 3 - a:1",
        b"xzd1 v1 200 3 - a:1",
        b"zd1  200 3 - a:1",  # empty release
    ],
)
def test_what_is_not_a_line(raw: bytes) -> None:
    assert parse_line(raw) is None


async def test_collector_counts_per_release_and_flag_variant(tmp_path: Path) -> None:
    now = [1000.0]
    releases = {"127.0.0.1:9003": "v3"}
    log = AccessLog(
        tmp_path / "access.log",
        samples=3,
        release_of=releases.get,
        clock=lambda: now[0],
        transport="file",
    )
    assert isinstance(log, StatsSource)
    for raw in (
        b"zd1 v1 200 10 - 127.0.0.1:9001",
        b"zd1 v1 404 20 - 127.0.0.1:9001",
        b"zd1 v1 500 30 beta=on 127.0.0.1:9001",
        b"zd1 - 503 0 - 127.0.0.1:9003",  # no release in the line: known by its address
        b"zd1 - 503 0 - -",  # neither: not counted under any release
        b"garbage",
    ):
        now[0] += 1
        log.receive_many([raw])
    stats = await log.stats()
    assert set(stats) == {"v1", "v3", "flag:beta=on"}
    v1 = stats["v1"]
    assert (v1.requests, v1.responses_4xx, v1.responses_5xx, v1.transport_errors) == (3, 1, 1, 0)
    assert v1.latency_sum == pytest.approx(0.06)
    assert stats["v3"].responses_5xx == 1 and stats["flag:beta=on"].responses_5xx == 1
    assert list(await log.samples("v1", 1001.5)) == [(1002.0, 0.02, 404), (1003.0, 0.03, 500)]
    assert await log.samples("nope", 0) == []
    assert (log.received, log.malformed) == (5, 1)
    for _ in range(5):
        log.receive_many([b"zd1 v1 200 1 - 127.0.0.1:9001"])
    assert len(await log.samples("v1", 0)) == 3  # the ring is bounded


def _table(*releases: str) -> RouteTable:
    pools = tuple(
        Pool(r, 50, (Backend(f"127.0.0.1:{9000 + n}", f"{r}-0"),)) for n, r in enumerate(releases)
    )
    return RouteTable(1, pools)


def test_a_rollout_is_two_releases_with_backends() -> None:
    assert in_rollout(_table("v1", "v2"))
    assert not in_rollout(_table("v1"))
    assert not in_rollout(RouteTable(1, (Pool("v1", 100, ()), *_table("v2").pools)))


async def test_log_switch_follows_rollouts_and_reads_until_the_lease_ends() -> None:
    turned: list[bool] = []
    off = asyncio.Event()

    async def turn(on: bool) -> None:
        turned.append(on)
        if not on:
            off.set()

    switch = LogSwitch(turn, on=None, lease=0.05)
    await switch.table(_table("v1"))
    assert turned == [False] and switch.on is False
    await switch.table(_table("v1", "v2"))
    await switch.read()  # on already: no call
    await switch.table(_table("v2"))  # the lease still runs
    assert turned == [False, True]
    off.clear()
    await asyncio.wait_for(off.wait(), 5)  # the lease ended: off
    assert turned == [False, True, False] and switch.on is False and switch.switches == 2
    await switch.read()
    assert switch.on is True
    switch.cancel()


async def test_a_batch_counts_as_its_lines_one_by_one(tmp_path: Path) -> None:
    """receive_many groups lines that differ only in their time: the same counters, histogram
    and samples as receiving each line alone."""
    releases = {"127.0.0.1:9003": "v3"}
    lines = [
        b"zd1 v1 200 0.001s - 127.0.0.1:9001",
        b"zd1 v1 200 0.250s - 127.0.0.1:9001",
        b"zd1 v1 503 12 beta=on 127.0.0.1:9001",
        b"zd1 - 503 0.000s - 127.0.0.1:9003",
        b"zd1 - 502 0.000s - -",
        b"<134>Dec  1 14:53:04 zd: zd1 v2 200 0.002s - 127.0.0.1:9002",
        b"zd1 v1 200 nan - 127.0.0.1:9001",
        b"zd1 v1 200 1e9s - 127.0.0.1:9001",
        b"zd1 v1 200 -1 - 127.0.0.1:9001",
        b"zd1 v1 ok 3 - a:1",
        b"zd1 v1 200 0.001s - 127.0.0.1:9001",
        b"zd2 4 v1 200 3 - 127.0.0.1:9001",
        b"zd2 4 v1 200 5 - 127.0.0.1:9001",
        b"zd2 1 v1 503 3 beta=on 127.0.0.1:9001",
        b"zd2 - - 503 0 - <NOSRV>:0",
        b"zd2 8 - 503 0 - 127.0.0.1:9003",
        b"<134>Dec  1 14:53:04 zd: zd2 16 v2 200 0.002s - 127.0.0.1:9002",
        b"zd2 0 v1 200 3 - 127.0.0.1:9001",  # no weight 0
        b"zd2 4 v1 200",
        b"",
    ] * 3
    one, batch = (
        AccessLog(tmp_path / "a", release_of=releases.get, clock=lambda: 5.0, transport="file")
        for _ in range(2)
    )
    for line in lines:  # each line alone, the plain way: parse it, then count it
        if line:
            parsed = parse_line(line)
            if parsed is None:
                one.malformed += 1
            else:
                one.received += 1
                one.record(parsed, one.clock())
    batch.receive_many(lines)

    def rounded(stats: Mapping[str, ReleaseStats]) -> dict[str, ReleaseStats]:
        # sums of weighted latencies in another order: the same to the last few bits
        return {k: replace(v, latency_sum=round(v.latency_sum, 9)) for k, v in stats.items()}

    assert rounded(await batch.stats()) == rounded(await one.stats())
    assert (batch.received, batch.malformed) == (one.received, one.malformed) == (42, 15)
    for release in ("v1", "v2", "v3", "flag:beta=on"):
        assert sorted(await batch.samples(release, 0)) == sorted(await one.samples(release, 0))


def test_a_zd2_line_carries_its_weight() -> None:
    assert parse_line(b"zd2 32 v2 200 3 - 127.0.0.1:9001") == LogLine(
        "v2", 200, 0.003, (), "127.0.0.1:9001", weight=32
    )
    assert parse_line(b"zd2 - v2 200 3 - a:1") == LogLine("v2", 200, 0.003, (), "a:1", weight=1)
    assert parse_line(b"zd1 v2 200 3 - a:1") == LogLine("v2", 200, 0.003, (), "a:1", weight=1)
    header = b"<134>Dec  1 14:53:04 zd: zd2 2 v2 200 0.001s - a:1, b:2"
    assert parse_line(header) == LogLine("v2", 200, 0.001, (), "b:2", weight=2)
    for bad in (b"zd2 0 v2 200 3 - a:1", b"zd2 x v2 200 3 - a:1", b"zd2 9999999 v2 200 3 - a:1"):
        assert parse_line(bad) is None


async def test_weighted_lines_scale_the_counters_not_the_samples(tmp_path: Path) -> None:
    """A line of weight 4 counts 4 requests (and 4 errors, 4 in the histogram), but is one
    sample: the judges compare the requests logged, the counters estimate all of them."""
    log = AccessLog(tmp_path / "a", clock=lambda: 7.0, transport="file")
    log.receive_many(
        [b"zd2 4 v1 200 10 - a:1"] * 3 + [b"zd2 4 v1 500 20 - a:1", b"zd2 1 v1 200 1 - a:1"]
    )
    v1 = (await log.stats())["v1"]
    assert (v1.requests, v1.responses_5xx, sum(v1.latency_counts)) == (17, 4, 17)
    assert v1.latency_sum == pytest.approx(4 * 0.05 + 0.001)
    assert len(await log.samples("v1", 0)) == 5 and log.received == 5
    assert log.requests() == {"v1": 17}


@pytest.mark.parametrize(
    ("rate", "weight", "expected"),
    [
        (0, 1, 1),
        (300, 1, 1),  # a canary at a few hundred a second: every request
        (LINES_CAP, 1, 1),
        (LINES_CAP + 1, 1, 2),
        (25_000, 1, 32),  # 781 lines a second; 16 would make 1,562
        (25_000, 32, 32),
        (40_000, 32, 64),  # 1,250 at 32: up to 625
        (15_000, 32, 32),  # 937 at 16, over half the cap: stays
        (7_000, 32, 16),  # 437 at 16: down one; 875 at 8: no further
        (300, 64, 1),  # the rate fell: every request again
        (1e12, 1, 1 << 16),  # the largest weight
    ],
)
def test_sampling_weight(rate: float, weight: int, expected: int) -> None:
    assert sampling_weight(rate, weight) == expected


@pytest.mark.parametrize("steps", [POWERS_OF_TWO, SAMPLING_STEPS], ids=["haproxy", "nginx"])
def test_a_steady_rate_keeps_its_weight(steps: tuple[int, ...]) -> None:
    """Hysteresis: from any weight, the weight reached is reached again at the same rate; the
    lines stay at most the cap, and once sampled above cap / (2 x the largest step ratio): a
    quarter of it with HAProxy's powers of two, a fifth with nginx's steps."""
    ratio = max(b / a for a, b in itertools.pairwise(steps))
    for rate in [10 * 1.07**n for n in range(200)]:
        for start in steps[::3]:
            weight = sampling_weight(rate, start, steps=steps)
            assert weight in steps
            assert sampling_weight(rate, weight, steps=steps) == weight
            assert rate / weight <= LINES_CAP or weight == steps[-1]
            assert weight == 1 or rate / weight > LINES_CAP / (2 * ratio)


def test_a_weight_comes_down_only_after_the_hold() -> None:
    """Up at once; down once the rate has called for less for `hold` seconds of traffic, looks
    without a request not counted."""
    rates = {"v1": 100.0, "v2": 50_000.0}
    assert plan_weights(rates, {}, {}, 1.0) == ({"v2": 64}, {})
    weights, lower_for = plan_weights(rates, {"v1": 8, "v2": 64}, {"v1": 5.0}, 1.0, hold=10)
    assert weights == {"v1": 8, "v2": 64} and lower_for == {"v1": 6.0}
    assert plan_weights(rates, {"v1": 8, "v2": 64}, {"v1": 9.0}, 1.0, hold=10) == ({"v2": 64}, {})
    assert plan_weights({"v1": 9000.0}, {"v1": 8}, {"v1": 9.0}, 1.0)[0] == {"v1": 16}  # up
    assert plan_weights({"v1": 0.0}, {"v1": 8}, {"v1": 9.0}, 1.0, hold=10) == (
        {"v1": 8},
        {"v1": 9.0},  # a quiet look: the weight stays, the time does not count
    )
    assert plan_weights({"v1": 8000.0}, {"v1": 8}, {"v1": 9.0}, 1.0) == ({"v1": 8}, {})  # needed


async def test_the_sampler_weighs_from_the_counted_requests(tmp_path: Path) -> None:
    now = [0.0]
    log = AccessLog(tmp_path / "a", clock=lambda: 1.0, transport="file")
    applied: list[dict[str, int]] = []

    async def apply(weights: object) -> None:
        applied.append(dict(weights))  # type: ignore[call-overload]

    sampler = Sampler(log, apply, cap=100, clock=lambda: now[0])
    log.receive_many([b"zd2 1 v1 200 1 - a:1"] * 50 + [b"zd2 1 flag:x 200 1 - a:1"])
    sampler._seen = log.requests()  # what start() records
    log.receive_many([b"zd2 1 v1 200 1 b=1 a:1"] * 150 + [b"zd2 1 v2 200 1 - b:1"] * 20)
    now[0] = 1.0
    await sampler.look()  # 150 a second for v1, 20 for v2 (new since the start: all of it)
    assert applied == [{"v1": 2}] and sampler.weights == {"v1": 2}
    log.receive_many([b"zd2 2 v1 200 1 - a:1"] * 75)
    now[0] = 2.0
    await sampler.look()  # the same rate, estimated from weighted lines: no change
    assert applied == [{"v1": 2}] and sampler.changes == 1
