"""The HAProxy router driver against a real HAProxy 2.6: reloads under load, attach mode."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import mmh3
import pytest
from router_kit import BackendProc, table

from support.routers import captured_lines, find_binary, require_router
from support.services import free_port
from zerodown import procfs
from zerodown.core.routes import Match, Sticky
from zerodown.loadgen import LoadGenerator
from zerodown.paths import Paths
from zerodown.routers.haproxy.config import LOG_SWITCH
from zerodown.routers.haproxy.driver import AttachedHaproxy, ManagedHaproxy
from zerodown.spec.model import Spec

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def _haproxy() -> None:
    require_router("haproxy")


def spec(port: int, **router: object) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"], "drain": "1s"},
            "router": {"kind": "haproxy", "listen": f"127.0.0.1:{port}", **router},
        }
    )


async def test_reloads_under_load_fail_no_request(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    port = free_port()
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec(port))
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [backend_a])))
        workers = {await router.api.pid()}
        # HAProxy 2.6 closes the old worker's idle keep-alive client connections at a reload
        # (2.7 has idle-close-on-response): this client, like a browser or Go's net/http, looks
        # before reusing a connection and sends a GET again when a reused connection closed
        # before any byte of its response. See docs/router.md, "HAProxy".
        url = f"http://127.0.0.1:{port}/"
        with LoadGenerator(url, rate=300, max_seconds=30, browser_like=True) as load:
            await asyncio.sleep(1)
            generation = 2
            for n in range(4):  # each names a header no rule reads yet: a reload each
                matches = tuple(Match("v2", "yes", header=f"X-Reload-{k}") for k in range(n + 1))
                await router.apply(
                    table(
                        generation,
                        ("v2", 20, [backend_b]),
                        ("v1", 80, [backend_a]),
                        matches=matches,
                        sticky=Sticky(cookie="zd") if n == 3 else None,
                    )
                )
                generation += 1
                workers.add(await router.api.pid())
                await router.apply(table(generation, ("v1", 100, [backend_a]), matches=matches))
                generation += 1
                await asyncio.sleep(0.4)
            await asyncio.sleep(1)
        report = load.report
        assert report.total >= 900
        assert [(s.status, s.error) for s in report.failed] == []
        assert len(workers) == 5  # four reloads, four new workers
        routed = httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Reload-2": "yes"})
        assert routed.json()["name"] == "a"  # v2 has no backends now: the rule gives way
        stats = await router.stats()
        counted = sum(s.requests for s in stats.values())
        print(
            f"reloads: {len(workers) - 1}, {report.total} requests ({report.retried} sent again"
            f" on a new connection), access log saw {counted}"
        )
        assert set(stats) <= {"v1", "v2"} and counted > 0
        # sticky users land where the built-in router puts them: murmur3(key) % 100 (Lua)
        await router.apply(
            table(generation, ("v2", 30, [backend_b]), ("v1", 70, [backend_a]), sticky=Sticky("zd"))
        )
        with httpx.Client() as client:
            for n in range(40):
                key = f"user-{n}"
                cookie = {"Cookie": f"zd={key}"}
                got = client.get(f"http://127.0.0.1:{port}/", headers=cookie).json()["name"]
                assert got == ("b" if mmh3.hash(key, signed=False) % 100 < 30 else "a"), key
        # a new controller reads the ring again (from its end): HAProxy's lines reach it
        router.access.close()
        router._checked_at = -math.inf
        await router.start()
        events = router.access.events
        assert events is not None
        await wait_until(lambda: events.sessions == 1, "a session to the ring")
        received = router.access.received
        httpx.get(f"http://127.0.0.1:{port}/", headers={"Cookie": "zd=user-1"})
        await wait_until(lambda: router.access.received > received, "a log line after it")
        # HAProxy killed: the next start brings it back with the last table
        master = router.pid()
        assert master is not None
        os.killpg(master, signal.SIGKILL)
        await wait_until(lambda: router.pid() is None, "HAProxy to be gone")
        router._checked_at = -math.inf  # the next pass, without waiting a second
        await router.start()
        assert router.pid() not in (None, master)
        assert await router.verify(await router.table())
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"Cookie": "zd=user-1"}).is_success
    finally:
        await router.stop(grace=5)
    assert router.pid() is None


async def test_every_request_is_counted_once_across_a_reload(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    """The collector reads HAProxy's ring through the Runtime API: under load, with a reload
    in the middle (a new worker, whose ring is read from its start, while the old worker's
    session is kept until the old worker has no client left), every request is one line,
    counted once; and the old worker is not held up by that session."""
    port = free_port()
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec(port))
    url = f"http://127.0.0.1:{port}/"
    try:
        await router.start()
        await router.apply(table(1, ("v2", 50, [backend_b]), ("v1", 50, [backend_a])))
        old = await router.api.pid()
        with LoadGenerator(url, rate=300, max_seconds=3, browser_like=True) as load:
            await asyncio.sleep(1)
            rule = (Match("v2", "yes", header="X-New-Rule"),)  # no rule reads it: a reload
            await router.apply(
                table(2, ("v2", 50, [backend_b]), ("v1", 50, [backend_a]), matches=rule)
            )
            assert await router.api.pid() != old
        report = load.report
        assert report.failed == [] and report.total >= 300
        await wait_until(lambda: router.access.received >= report.total, "every line")
        stats = await router.stats()
        assert router.access.received == report.total
        assert stats["v1"].requests + stats["v2"].requests == report.total
        # hard-stop-after is 31 s: the old worker is gone long before, once its clients are
        await wait_until(lambda: not procfs.running(old), "the old worker to exit")
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


TEAM_CONFIG = """\
global
  stats socket {sock} mode 600 level admin
defaults
  mode http
  timeout connect 3s
  timeout client 30s
  timeout server 30s
frontend team
  bind 127.0.0.1:{port}
  default_backend shop
backend shop
  balance roundrobin
  server team-1 {team} weight 10
"""


async def test_attach_touches_only_its_own_servers(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    port = free_port()
    sock = tmp_path / "team.sock"
    config = tmp_path / "team.cfg"
    config.write_text(TEAM_CONFIG.format(sock=sock, port=port, team=backend_a.address))
    before = hashlib.sha256(config.read_bytes()).hexdigest()
    binary = find_binary("haproxy")
    assert binary is not None
    team = subprocess.Popen([binary, "-W", "-f", str(config)], start_new_session=True)
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = AttachedHaproxy(
        paths=paths, spec=spec(port, attach={"admin_socket": str(sock), "backend": "shop"})
    )
    try:
        deadline = time.monotonic() + 10
        while not await router.healthy():
            assert time.monotonic() < deadline, "the team's HAProxy did not start"
            await asyncio.sleep(0.05)
        await router.start()
        await router.apply(table(1, ("v2", 100, [backend_b])))
        assert await router.verify(table(1, ("v2", 100, [backend_b])))
        names = {httpx.get(f"http://127.0.0.1:{port}/").json()["name"] for _ in range(20)}
        assert names == {"a", "b"}  # the team's server and ours
        await router.apply(table(2))  # ours leaves: maintenance, then deleted once idle
        loads = await router.backends()
        assert loads.get(backend_b.address) is None or loads[backend_b.address].release == "v2"
        deadline = time.monotonic() + 10
        while {s.name for s in await router.api.servers(["shop"])} != {"team-1"}:
            assert time.monotonic() < deadline, "our server was not removed"
            await router.backends()
            await asyncio.sleep(0.1)
        (team_server,) = await router.api.servers(["shop"])
        assert team_server.weight == 10 and not team_server.maint
        assert hashlib.sha256(config.read_bytes()).hexdigest() == before
    finally:
        team.terminate()
        team.wait(10)


def test_up_without_haproxy_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.workspace import Workspace

    ws = Workspace.create(tmp_path, router_kind="haproxy")
    monkeypatch.setenv("ZERODOWN_HAPROXY", str(tmp_path / "no-haproxy-here"))
    result = ws.zd("up", "--version", "v1", check=False, timeout=60)
    assert result.returncode != 0
    assert (
        "error: the controller did not start: router.kind: router kind haproxy needs the"
        " haproxy binary, which is not installed: apt-get install haproxy" in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


async def test_the_per_request_log_runs_only_while_something_reads_it(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc, caplog: pytest.LogCaptureFixture
) -> None:
    """One release and nobody reading: HAProxy sends no line. A canary, or a read of the
    samples, turns the log on at runtime (no reload: the same worker); the read's lease ending
    turns it off again; a stop while the log is read is soft to its end."""
    port = free_port()
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec(port))
    url = f"http://127.0.0.1:{port}/"
    try:
        await router.start()
        await router.apply(table(1, ("v1", 100, [backend_a])))
        worker = await router.api.pid()
        assert router.log_switch.on is False
        with httpx.Client() as client:
            for _ in range(20):
                assert client.get(url).is_success
            # A canary: lines from now on. They reach the collector in order, so once the
            # canary's lines are in, any line of the 20 requests before would be too.
            await router.apply(table(2, ("v2", 50, [backend_b]), ("v1", 50, [backend_a])))
            assert router.log_switch.on is True
            for _ in range(10):
                assert client.get(url).is_success
            await wait_until(lambda: router.access.received >= 10, "the canary's lines")
            assert router.access.received == 10
            await router.apply(table(3, ("v1", 100, [backend_a])))
            assert router.log_switch.on is False
            # A read with one release (flag guards, charts): on until the lease ends.
            router.log_switch.lease = 1.0
            assert await router.samples("v1", 0)  # the canary's lines are kept
            assert router.log_switch.on is True
            assert client.get(url).is_success
            await wait_until(lambda: router.access.received == 11, "the line of a read's lease")
            await wait_until(lambda: router.log_switch.on is False, "the lease to end")
            for _ in range(5):
                assert client.get(url).is_success
            await router.apply(table(4, ("v2", 50, [backend_b]), ("v1", 50, [backend_a])))
            assert client.get(url).is_success
            await wait_until(lambda: router.access.received >= 12, "a line after the lease")
            assert router.access.received == 12  # none of the 5 requests after the lease
        assert await router.api.pid() == worker  # every switch without a reload
        assert router.log_switch.switches == 5
        # The log on, its ring read: a soft stop finishes by itself (the reader's Runtime API
        # session, which never ends, closed first), not by SIGKILL at the end of the grace.
        master = router.pid()
        assert master is not None
        with caplog.at_level(logging.WARNING, logger="zerodown.router.haproxy"):
            await router.stop(grace=5)  # no request in flight: a soft stop is at once
        assert "killed" not in caplog.text
        with pytest.raises(ProcessLookupError):
            os.kill(master, 0)
    finally:
        await router.stop(grace=5)
        await router.aclose()


async def test_the_log_switch_is_carried_over_by_a_reload_and_a_restart(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    """The switch is a server's state (config.LOG_SWITCH): a reload keeps it on and keeps it
    off, and a HAProxy started again by a new controller starts from the configuration written
    with it."""
    port = free_port()
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    url = f"http://127.0.0.1:{port}/"
    canary = (("v2", 50, [backend_b]), ("v1", 50, [backend_a]))

    async def switch_off(router: ManagedHaproxy) -> bool:
        (state,) = await router.api.servers([LOG_SWITCH.split("/")[0]])
        return state.maint

    router = ManagedHaproxy(paths=paths, spec=spec(port))
    try:
        await router.start()
        await router.apply(table(1, *canary))
        await router.reload()
        assert router.log_switch.on is True and not await switch_off(router)
        with httpx.Client() as client:
            for _ in range(5):
                assert client.get(url).is_success
        await wait_until(lambda: router.access.received >= 5, "lines after a reload")
        await router.apply(table(2, ("v1", 100, [backend_a])))
        await router.reload()
        assert router.log_switch.on is False and await switch_off(router)
        await router.apply(table(3, *canary))
        assert not await switch_off(router)
    finally:
        await router.stop(grace=5)
        await router.aclose()
    # A new controller, HAProxy gone: started again with the log on, as the last one left it.
    again = ManagedHaproxy(paths=paths, spec=spec(port))
    try:
        assert again.log_switch.on is True
        await again.start()
        assert not await switch_off(again)
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(url).is_success
        await wait_until(lambda: again.access.received >= 3, "lines after a restart")
    finally:
        await again.stop(grace=5)
        await again.aclose()


async def test_a_sampled_log_weighs_each_line_by_the_requests_it_stands_for(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    """The sampling rules on the real binary: no weight, every request is a line (`zd2 1 …`);
    v1 at weight 4, fewer lines than requests, each `zd2 4 v1 …`, and v1's counts are 4 per
    line; v2 (no weight) still has every request. Then the controller itself: a low line cap under load
    makes it weigh the releases, at runtime (the same worker), and every line carries the
    weight of its release."""
    port = free_port()
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec(port))
    lines = captured_lines(router.access)
    url = f"http://127.0.0.1:{port}/"
    try:
        await router.start()
        await router.apply(table(1, ("v2", 50, [backend_b]), ("v1", 50, [backend_a])))
        worker = await router.api.pid()
        router.sampler.stop()  # the weights by hand first
        served = {"a": 0, "b": 0}
        with httpx.Client() as client:
            for _ in range(40):
                served[client.get(url).json()["name"]] += 1
            await wait_until(lambda: len(lines) >= 40, "a line per request")
            assert [ln.split(b" ")[:2] for ln in lines] == [[b"zd2", b"1"]] * 40
            await router._set_sampling({"v1": 4})
            lines.clear()
            before = {name: s.requests for name, s in (await router.stats()).items()}
            for _ in range(400):
                served[client.get(url).json()["name"]] += 1
        # v2's lines come in order with v1's: once all of v2's are in, so are v1's
        await wait_until(lambda: sum(b" v2 " in ln for ln in lines) >= served["b"] - 20, "v2")
        stats = await router.stats()
        v1 = [ln for ln in lines if ln.split(b" ")[2] == b"v1"]
        v2 = [ln for ln in lines if ln.split(b" ")[2] == b"v2"]
        assert len(v1) + len(v2) == len(lines)
        assert {ln.split(b" ")[1] for ln in v1} == {b"4"}
        assert {ln.split(b" ")[1] for ln in v2} == {b"1"}
        assert len(v2) == served["b"] - 20  # every request of a release without a weight
        assert 0 < len(v1) < served["a"] - 20  # 1 in 4 of some 200 (all: odds of 4^-200)
        assert stats["v1"].requests - before["v1"] == 4 * len(v1)
        assert stats["v2"].requests - before["v2"] == len(v2)
        assert len(await router.samples("v1", 0)) == 20 + len(v1)  # one sample per line

        # The controller: at most 20 lines a second per release, load at some 200 a second.
        await router._set_sampling({})
        router.sampler.weights = {}
        router.sampler.cap = 20.0
        router.sampler.start()
        lines.clear()
        with LoadGenerator(url, rate=200, max_seconds=30) as load:
            await wait_until(
                lambda: len(router.sampler.weights) == 2, "the sampler to weigh both", 15
            )
            weights = dict(router.sampler.weights)
            lines.clear()
            await asyncio.sleep(1.5)  # lines of requests made under those weights
        assert load.report.failed == []
        await asyncio.sleep(0.5)
        assert all(w > 1 for w in weights.values())
        later = lines[len(lines) // 2 :]  # the first ones may be of requests before the change
        assert later and all(
            int(ln.split(b" ")[1]) == router.sampler.weights[ln.split(b" ")[2].decode()]
            or router.sampler.weights != weights
            for ln in later
        )
        assert await router.api.pid() == worker  # sampling changed without a reload
    finally:
        await router.stop(grace=5)
        await router.aclose()
