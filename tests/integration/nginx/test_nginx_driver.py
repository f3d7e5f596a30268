"""The nginx driver against a real nginx: routing rules, coalesced reloads under load with 0
failed requests, drain tracking through old workers, and the per-request log."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from integration.nginx.nginx_kit import Backends, make_router, table, versions
from support.routers import captured_lines
from support.services import free_port
from zerodown.core.routes import Match, Sticky
from zerodown.loadgen import LoadGenerator
from zerodown.paths import Paths
from zerodown.routers.nginx import render
from zerodown.routers.nginx.driver import CHECK_EVERY, NginxRouter
from zerodown.spec.model import Spec

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def on_canary(url: str, keys: list[str]) -> set[str]:
    """The sticky keys nginx sends to v2."""
    with httpx.Client() as client:
        return {
            k for k in keys if client.get(url, headers={"Cookie": f"zd_b={k}"}).text == "ok v2\n"
        }


async def test_routing_rules_reloads_and_stats(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    url = f"http://{router.spec.router.listen}/"
    try:
        await router.start()
        assert httpx.get(url).status_code == 503  # no table yet: no backend
        await router.apply(table(0))  # the engine's first table routes as nginx started: kept
        assert router.reloads == 0
        await router.apply(table(1, ("v2", 25, [v2]), ("v1", 75, [v1])))
        counts = Counter(await asyncio.to_thread(versions, url, 400))
        assert counts == {"ok v2": 100, "ok v1": 300}  # exact per round of the split
        header = Match("v2", "yes", header="X-Canary")
        cookie = Match("v2", "on", cookie="beta")
        await router.apply(table(2, ("v2", 0, [v2]), ("v1", 100, [v1]), matches=(header, cookie)))
        assert set(await asyncio.to_thread(versions, url, 20)) == {"ok v1"}
        routed = await asyncio.to_thread(versions, url, 5, headers={"X-Canary": "yes"})
        assert set(routed) == {"ok v2"}
        assert httpx.get(url, headers={"X-Canary": "YES"}).text == "ok v1\n"  # exact value
        assert httpx.get(url, headers={"Cookie": "a=1; beta=on"}).text == "ok v2\n"
        await router.apply(table(3, ("v2", 20, [v2]), ("v1", 80, [v1]), sticky=Sticky("zd_b")))
        first = httpx.get(url)
        key = first.cookies["zd_b"]
        again = await asyncio.to_thread(versions, url, 10, headers={"Cookie": f"zd_b={key}"})
        assert set(again) == {first.text.strip()}
        keys = [f"user-{n}" for n in range(200)]
        on_v2 = await asyncio.to_thread(on_canary, url, keys)
        assert 20 <= len(on_v2) <= 60  # about 20% of 200
        await router.apply(table(4, ("v2", 60, [v2]), ("v1", 40, [v1]), sticky=Sticky("zd_b")))
        later = await asyncio.to_thread(on_canary, url, keys)
        assert on_v2 <= later and len(later) > len(on_v2)  # nobody flips back
        assert (await router.table()).generation == 4
        reloads = router.reloads
        await router.apply(table(5, ("v2", 60, [v2]), ("v1", 40, [v1]), sticky=Sticky("zd_b")))
        assert router.reloads == reloads  # same routing, new number: no reload
        # A new controller (a new driver on the same state) applying what nginx runs: no wait.
        again = NginxRouter(paths=router.paths, spec=router.spec, binary=nginx)
        async with asyncio.timeout(5):
            await again.apply(table(5, ("v2", 60, [v2]), ("v1", 40, [v1]), sticky=Sticky("zd_b")))
        assert again.reloads == 0 and (await again.table()).generation == 5
        stats = await router.stats()
        assert stats["v1"].requests > 300 and stats["v2"].requests > 100
        assert await router.samples("v2", 0)
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def test_ten_table_changes_a_second_under_load_fail_nothing(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    url = f"http://{router.spec.router.listen}/"
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [v1])))
        applies = []
        # nginx's graceful reload closes idle keep-alive connections: a browser-like client
        # sends a GET again when its reused connection closed before any byte (counted)
        with LoadGenerator(
            url, rate=300, connections=16, max_seconds=30, browser_like=True
        ) as load:
            await asyncio.sleep(0.5)
            started = time.monotonic()
            for n in range(100):  # 10 a second for 10 s, each a different split
                weight = (n * 7) % 101
                t = table(2 + n, ("v2", weight, [v2]), ("v1", 100 - weight, [v1]))
                applies.append(asyncio.create_task(router.apply(t)))
                await asyncio.sleep(max(0, started + (n + 1) / 10 - time.monotonic()))
            await asyncio.gather(*applies)
            await asyncio.sleep(0.5)
        report = load.report
        print(
            f"100 table changes in 10 s: {router.reloads} reloads; {report.summary()};"
            f" {report.retried} requests retried by the client"
        )
        assert report.total >= 2500
        assert [(s.status, s.error) for s in report.failed] == []
        assert (await router.table()).generation == 101
        assert router.reloads <= 50  # coalesced: at most one per MIN_RELOAD_GAP
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def test_removed_backend_counts_in_flight_until_old_workers_finish(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    url = f"http://{router.spec.router.listen}"
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [v1])))
        slow = asyncio.create_task(asyncio.to_thread(httpx.get, f"{url}/slow?ms=3000", timeout=10))
        await asyncio.sleep(1.0)  # the slow request is on its way to v1 (nothing tells when)
        await router.apply(table(2, ("v2", 100, [v2])))
        assert (await router.backends())[v1].inflight >= 1
        assert httpx.get(url + "/").text == "ok v2\n"  # new requests: the new table
        response = await slow
        assert response.text == "ok v1\n"  # the old worker finished it
        deadline = time.monotonic() + 5
        while v1 in await router.backends():
            assert time.monotonic() < deadline, "v1 still counted in flight"
            await asyncio.sleep(0.05)
        # Supervision: a master killed with -9 leaves its workers serving (and holding the
        # socket); the next start ends them and runs a new master with the table it ran.
        master = router.process.pid()
        assert master is not None
        os.kill(master, signal.SIGKILL)
        assert httpx.get(url + "/").text == "ok v2\n"  # the orphaned workers still serve
        await asyncio.sleep(CHECK_EVERY)
        await router.start()
        assert router.process.pid() not in (None, master)
        assert httpx.get(url + "/").text == "ok v2\n"
    finally:
        await router.stop(grace=5)
        await router.aclose()


TEAM_CONF = """
daemon off;
pid {d}/team.pid;
error_log {d}/team-error.log error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    include {d}/conf.d/*.conf;
}}
"""


async def test_attach_writes_only_its_file_and_runs_the_reload_command(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    v1, v2 = backends.start("v1"), backends.start("v2")
    team = tmp_path / "team"
    (team / "conf.d").mkdir(parents=True)
    (team / "tmp").mkdir()
    (team / "team.conf").write_text(TEAM_CONF.format(d=team))
    argv = [nginx, "-p", str(team), "-c", str(team / "team.conf"), "-e", str(team / "stderr")]
    proc = await asyncio.create_subprocess_exec(*argv)
    listen = f"127.0.0.1:{free_port()}"
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["true"]},
            "router": {
                "kind": "nginx",
                "listen": listen,
                "attach": {
                    "config": str(team / "conf.d" / "shop.conf"),
                    "reload": [*argv, "-s", "reload"],
                },
            },
        }
    )
    (tmp_path / "zerodown.yaml").write_text("service: shop\n")
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = NginxRouter(paths=paths, spec=spec, binary=nginx)
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [v1])))
        assert httpx.get(f"http://{listen}/").text == "ok v1\n"
        await router.apply(table(2, ("v2", 100, [v2])))  # returns once nginx serves it
        assert set(await asyncio.to_thread(versions, f"http://{listen}/", 10)) == {"ok v2"}
        assert not (paths.state / "nginx").exists()  # nothing of a managed nginx
        assert sorted(p.name for p in (team / "conf.d").iterdir()) == ["shop.conf"]
        assert (await router.backends())[v1].inflight == 1  # unknown: busy until run.drain
    finally:
        await router.aclose()
        proc.terminate()
        await proc.wait()


async def test_the_per_request_log_runs_only_while_something_reads_it(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    """One release and nobody reading: no line. A table that starts a canary carries the log
    in its own reload; a read of the samples with one release costs one reload, and so does
    the end of the read's lease."""
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    url = f"http://{router.spec.router.listen}/"
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [v1])))
        assert router.log_switch.on is False
        assert set(await asyncio.to_thread(versions, url, 20)) == {"ok v1"}
        reloads = router.reloads
        await router.apply(table(2, ("v2", 50, [v2]), ("v1", 50, [v1])))
        assert router.log_switch.on is True and router.reloads == reloads + 1
        await asyncio.to_thread(versions, url, 10)
        # Lines from the log file: wait for 10 (none of the 20).
        await wait_for(lambda: router.access.received >= 10, "the canary's lines")
        await router.apply(table(3, ("v1", 100, [v1])))
        assert router.log_switch.on is False and router.reloads == reloads + 2
        router.log_switch.lease = 1.0
        assert await router.samples("v2", 0)
        assert router.log_switch.on is True and router.reloads == reloads + 3
        await asyncio.to_thread(versions, url, 1)
        await wait_for(lambda: router.access.received >= 11, "the line of a read's lease")
        await wait_for(lambda: router.log_switch.on is False, "the lease to end")
        assert router.reloads == reloads + 4
        assert router.access.received == 11  # nothing of the 20 requests at rest
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def test_a_burst_of_requests_is_counted_exactly_across_rotations(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    """Every request of a burst from many connections is one line, counted once, while the
    collector rotates the log file under nginx (rename, reopen) several times. (Sent as
    datagrams, 35-72 % of such lines were lost.)"""
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    router.access.max_bytes = 16_000  # a rotation every few hundred lines
    router.sampler.cap = math.inf  # every request a line, however fast the burst
    url = f"http://{router.spec.router.listen}/"
    clients, each = 16, 150
    try:
        await router.start()
        await router.apply(table(1, ("v2", 50, [v2]), ("v1", 50, [v1])))  # a rollout: log on

        def burst() -> None:
            with ThreadPoolExecutor(clients) as pool:
                answers = list(pool.map(lambda _: versions(url, each), range(clients)))
            assert sum(len(a) for a in answers) == clients * each

        await asyncio.to_thread(burst)
        sent = clients * each
        await wait_for(lambda: router.access.received >= sent, f"{sent} lines", timeout=30)
        stats = await router.stats()
        assert router.access.received == sent and router.access.malformed == 0
        assert stats["v1"].requests + stats["v2"].requests == sent
        tail = router.access.tail
        assert tail is not None and tail.rotations >= 2
        run = router.access.path.parent
        logs = sorted(p.name for p in run.iterdir() if p.name.startswith("nginx-access"))
        assert logs in (["nginx-access.log"], ["nginx-access.log", "nginx-access.log.1"])
        assert router.access.path.stat().st_size < 16_000 + 65_536  # at most a buffer beyond
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def test_a_sampled_log_weighs_each_line_by_the_requests_it_stands_for(
    tmp_path: Path, nginx: str, backends: Backends
) -> None:
    """On the real binary: v1 sampled at weight 4 (a reload), each of its lines `zd2 4 v1 …`,
    about one request in four, counted 4 times; v2 not sampled: every request, weight 1. Then
    the controller's sampler, with a low line cap under load, weighs both releases by a reload,
    fails no request, and the lines carry its weights."""
    v1, v2 = backends.start("v1"), backends.start("v2")
    router = make_router(tmp_path, nginx)
    url = f"http://{router.spec.router.listen}/"
    lines = captured_lines(router.access)
    try:
        await router.start()
        await router.apply(table(1, ("v2", 50, [v2]), ("v1", 50, [v1])))  # a rollout: log on
        router.sampler.stop()  # the weights by hand first
        await asyncio.to_thread(versions, url, 40)
        await wait_for(lambda: len(lines) >= 40, "a line per request")
        assert {tuple(ln.split(b" ")[:2]) for ln in lines} == {(b"zd2", b"1")}
        reloads = router.reloads
        await router._set_sampling({"v1": 4})
        assert router.reloads == reloads + 1
        assert render.read_log_state(router.routes_file.read_text()) == (True, {"v1": 4})
        successor = NginxRouter(paths=router.paths, spec=router.spec, binary=nginx)
        assert successor.sampler.weights == {"v1": 4} and successor.log_switch.on is True
        assert not successor._log_changed()  # a new controller: what nginx runs, no reload
        lines.clear()
        before = {name: s.requests for name, s in (await router.stats()).items()}
        served = Counter(await asyncio.to_thread(versions, url, 800))
        await wait_for(lambda: sum(b" v2 " in ln for ln in lines) >= served["ok v2"], "v2's lines")
        await settled(lines)
        by_release = {r: [ln for ln in lines if ln.split(b" ")[2] == r] for r in (b"v1", b"v2")}
        assert sum(map(len, by_release.values())) == len(lines)
        assert {ln.split(b" ")[1] for ln in by_release[b"v1"]} == {b"4"}
        assert {ln.split(b" ")[1] for ln in by_release[b"v2"]} == {b"1"}
        assert len(by_release[b"v2"]) == served["ok v2"] == 400  # every request, weight 1
        assert 40 <= len(by_release[b"v1"]) <= 160  # 1 in 4 of 400: 100, 7 s.d. either side
        stats = await router.stats()
        assert stats["v1"].requests - before["v1"] == 4 * len(by_release[b"v1"])
        assert stats["v2"].requests - before["v2"] == 400

        # The controller: at most 40 lines a second per release, each at 100 requests a second
        # (one in 4 makes 25; a look that sees 60-160 a second, nginx's flushes in its window,
        # picks 4 too, or 2 first and then 4).
        await router._set_sampling({})
        router.sampler.weights = {}
        router.sampler.cap = 40.0
        router.sampler.start()
        reloads = router.reloads
        want = {"v1": 4, "v2": 4}
        # A reload closes idle keep-alive connections: a browser-like client tries again.
        with LoadGenerator(url, rate=200, max_seconds=30, browser_like=True) as load:
            await wait_for(lambda: router.sampler.weights == want, "the sampler", timeout=20)
            lines.clear()
            await wait_for(lambda: len(lines) >= 60, "lines under the weights", timeout=15)
        assert load.report.failed == []
        assert router.reloads > reloads  # each weight change is a reload
        later = lines[len(lines) // 2 :]  # the first may be of requests before the change
        assert later and {ln.split(b" ")[1] for ln in later} == {b"4"}
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def settled(lines: list[bytes]) -> None:
    """Until no line came for a second: nginx writes its buffered lines within 250 ms."""
    count, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
        if len(lines) != count:
            count, since = len(lines), time.monotonic()
        await asyncio.sleep(0.05)


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
