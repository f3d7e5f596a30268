"""The access-log collector that gives HAProxy and nginx the built-in router's RouterStats."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from zerodown.core.analysis.context import StatsSource
from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.routers.accesslog import AccessLog, LogLine, LogSwitch, in_rollout, parse_line

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
                one._record(parsed, one.clock())
    batch.receive_many(lines)
    assert await batch.stats() == await one.stats()
    assert (batch.received, batch.malformed) == (one.received, one.malformed) == (24, 9)
    for release in ("v1", "v2", "v3", "flag:beta=on"):
        assert sorted(await batch.samples(release, 0)) == sorted(await one.samples(release, 0))
