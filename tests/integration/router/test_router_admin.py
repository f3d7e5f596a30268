"""The router's admin API, the driver client, persistence and graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from router_kit import BackendProc, RouterProc, start_router, table, wait_for

from support.services import port_open
from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import LATENCY_BUCKETS, Match, RouteTable, Sticky
from zerodown.routers.proxy.client import ProxyRouter


def test_put_routes_validates_and_orders_generations(
    router: RouterProc, backend_a: BackendProc
) -> None:
    admin = router.admin()
    t1 = table(5, ("a", 100, [backend_a]))
    assert admin.put("/routes", json=t1.to_json()).json() == {"generation": 5}
    assert RouteTable.from_json(admin.get("/routes").json()) == t1
    r = admin.put("/routes", json=table(4, ("a", 100, [backend_a])).to_json())
    assert r.status_code == 409 and "generation 4 is older" in r.json()["error"]
    bad = t1.to_json()
    bad["pools"][0]["backends"][0]["address"] = "nohost"
    r = admin.put("/routes", json=bad)
    assert r.status_code == 400
    assert r.json()["error"].startswith("invalid route table: pools[0].backends[0].address")
    r = admin.put("/routes", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    health = admin.get("/healthz").json()
    assert health == {**health, "ok": True, "generation": 5, "pid": router.proc.pid}
    # The table on disk is the one that was acknowledged.
    assert RouteTable.from_json(json.loads(router.state_file.read_text())) == t1
    assert admin.get("/nope").status_code == 404
    assert admin.post("/routes").status_code == 405


def test_admin_socket_is_owner_only(router: RouterProc) -> None:
    mode = router.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_tcp_admin_needs_the_token_to_change_state(
    routers: Callable[..., RouterProc], backend_a: BackendProc
) -> None:
    router = routers(admin_listen=True)
    base = f"http://127.0.0.1:{router.admin_port}"
    body = table(1, ("a", 100, [backend_a])).to_json()
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
        assert c.put("/routes", json=body).status_code == 401
        r = c.put("/routes", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert c.get("/routes").json()["generation"] == 0
        assert c.get("/metrics").status_code == 200  # reads are open, for Prometheus
        r = c.put("/routes", json=body, headers={"Authorization": f"Bearer {router.token}"})
        assert r.status_code == 200
        assert c.get("/healthz").json()["generation"] == 1


def test_tcp_admin_without_token_file_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "zerodown.routers.proxy", "--admin-socket", str(tmp_path / "s"),
         "--state-file", str(tmp_path / "st"), "--admin-listen", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert "--admin-listen needs --admin-token-file" in r.stderr


def test_state_is_restored_after_restart(tmp_path: Path, backend_a: BackendProc) -> None:
    t = table(
        7,
        ("a", 100, [backend_a]),
        matches=(Match("a", "1", header="X-Canary"),),
        sticky=Sticky(cookie="zd"),
        preview="a",
    )
    first = start_router(tmp_path)
    try:
        first.apply(t)
    finally:
        assert first.stop() == 0
    second = start_router(tmp_path, state_file=first.state_file)
    try:
        assert RouteTable.from_json(second.admin().get("/routes").json()) == t
        with httpx.Client(trust_env=False, timeout=10) as c:
            assert c.get(second.url).json()["name"] == "a"
    finally:
        second.stop()


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    state = tmp_path / "state.json"
    state.write_text('{"generation": "x"}')
    r = subprocess.run(
        [sys.executable, "-m", "zerodown.routers.proxy", "--admin-socket", str(tmp_path / "s"),
         "--state-file", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert str(state) in r.stderr and "generation" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(
    routers: Callable[..., RouterProc], backend_a: BackendProc
) -> None:
    router = routers()
    router.apply(table(1, ("a", 100, [backend_a])))
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(trust_env=False, timeout=20) as c:
            results.append(c.get(f"{router.url}/slow", params={"s": 3}).status_code)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: router.stats()["backends"][backend_a.address]["inflight"] == 1, "in-flight")
    router.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not port_open("127.0.0.1", router.port), "the listener to close")
    assert router.proc.poll() is None  # still finishing the slow request
    assert router.stop() == 0
    t.join(10)
    assert results == [200]
    assert not router.admin_socket.exists()


def test_stats_samples_and_metrics(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    router.apply(table(1, ("a", 50, [backend_a]), ("b", 50, [backend_b])))
    before = time.time()
    with httpx.Client(base_url=router.url, trust_env=False, timeout=10) as c:
        for _ in range(100):
            c.get("/")
        for code in (404, 500):
            c.get("/status", params={"code": code})
    stats = router.stats()
    assert stats["generation"] == 1
    a, b = stats["releases"]["a"], stats["releases"]["b"]
    assert a["requests"] + b["requests"] == 102
    assert a["responses_4xx"] + b["responses_4xx"] == 1
    assert a["responses_5xx"] + b["responses_5xx"] == 1
    assert len(a["latency_counts"]) == len(LATENCY_BUCKETS) + 1
    assert sum(a["latency_counts"]) == a["requests"]
    assert 0 < a["latency_sum"] < 10
    assert stats["backends"][backend_a.address] == {
        "release": "a",
        "inflight": 0,
        "requests": a["requests"],
        "tunnels": 0,
    }
    samples = router.admin().get("/samples", params={"release": "a", "since": before}).json()
    assert len(samples) == a["requests"]
    ts, latency, status = samples[0]
    assert before <= ts <= time.time() and 0 < latency < 5 and status == 200
    assert (
        router.admin().get("/samples", params={"release": "a", "since": time.time()}).json() == []
    )
    assert router.admin().get("/samples").status_code == 400
    text = router.admin().get("/metrics").text
    assert (
        f'zerodown_requests_total{{release="a",code="200"}} {a["requests"] - a["responses_4xx"] - a["responses_5xx"]}'
        in text
    )
    assert 'zerodown_request_errors_total{release="b"} 0' in text
    assert f'zerodown_request_seconds_count{{release="a"}} {a["requests"]}' in text
    assert 'zerodown_request_seconds_bucket{release="a",le="+Inf"}' in text
    assert 'zerodown_request_seconds_bucket{release="a",le="0.001"}' in text
    assert f'zerodown_backend_inflight{{release="a",backend="{backend_a.address}"}} 0' in text
    assert "# TYPE zerodown_request_seconds histogram" in text


def test_driver_client(router: RouterProc, backend_a: BackendProc, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ProxyRouter(str(router.admin_socket)) as proxy:
            assert await proxy.healthy()
            t = table(3, ("a", 100, [backend_a]))
            assert await proxy.verify(t) is False
            await proxy.apply(t)
            await proxy.apply(t)  # idempotent
            assert await proxy.verify(t) is True
            assert await proxy.verify(table(4, ("a", 100, [backend_a]))) is False
            with pytest.raises(PermanentDriverError, match="older"):
                await proxy.apply(table(2, ("a", 100, [backend_a])))
            async with httpx.AsyncClient(trust_env=False) as c:
                for _ in range(5):
                    assert (await c.get(router.url)).status_code == 200
            stats = await proxy.stats()
            assert stats["a"].requests == 5 and stats["a"].errors == 0
            assert await proxy.backends() == {
                backend_a.address: BackendLoad(release="a", inflight=0, requests=5)
            }
            samples = await proxy.samples("a", 0)
            assert len(samples) == 5 and all(s[2] == 200 for s in samples)
            assert "zerodown_requests_total" in await proxy.metrics()
        async with ProxyRouter(str(tmp_path / "missing.sock")) as gone:
            assert not await gone.healthy()
            assert await gone.verify(table(1)) is None
            with pytest.raises(TransientDriverError, match="unreachable"):
                await gone.apply(table(1))
            with pytest.raises(TransientDriverError):
                await gone.stats()

    asyncio.run(scenario())
