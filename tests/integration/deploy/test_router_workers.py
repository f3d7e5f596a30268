"""`router: {workers: 2}` through the real CLI: two router processes share the port
(SO_REUSEPORT), both take connections, the counters the controller reads are the sum of
theirs, a canary's weights hold on both, `zerodown router restart` under load fails nothing,
a worker killed -9 is replaced, a hold holds on both, and `zerodown down` leaves none running."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from support.services import free_port
from support.workspace import Workspace, base_spec
from zerodown.paths import Paths
from zerodown.procfs import running
from zerodown.routers.proxy.workers import RouterWorkers
from zerodown.spec.load import load_spec

pytestmark = pytest.mark.slow

WORKERS = 2


def worker_pid(ws: Workspace, n: int) -> int:
    return int(Paths.for_spec(ws.spec_file).router_worker_pid(n).read_text())


def worker_stats(ws: Workspace, n: int) -> dict[str, Any]:
    admin = Paths.for_spec(ws.spec_file).router_worker_socket(n)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), timeout=10) as c:
        return dict(c.get("http://router/stats").json())


def requests_of(ws: Workspace, n: int, release: str) -> int:
    return int(worker_stats(ws, n)["releases"].get(release, {}).get("requests", 0))


def merged_requests(ws: Workspace, release: str) -> int:
    """What the controller's driver reads: every worker's counters, merged."""

    async def read() -> int:
        spec, paths = load_spec(ws.spec_file), Paths.for_spec(ws.spec_file)
        workers = RouterWorkers(paths=paths, spec=spec, count=WORKERS)
        try:
            return (await workers.stats())[release].requests
        finally:
            for w in workers.workers:
                await w.client.aclose()

    return asyncio.run(read())


def gone(pid: int) -> bool:
    return not running(pid)


def serving(ws: Workspace) -> list[int]:
    """The pid answering on each worker's admin socket (None: none answers)."""
    paths = Paths.for_spec(ws.spec_file)
    pids = []
    for n in range(WORKERS):
        admin = str(paths.router_worker_socket(n))
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=admin), timeout=5) as c:
                pids.append(c.get("http://router/healthz").json()["pid"])
        except httpx.TransportError:
            pids.append(None)
    return pids


def routers_running(ws: Workspace) -> list[int]:
    """Router processes of this workspace, standbys included."""
    where = str((ws.root / ".zerodown").resolve()).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"zerodown.routers.proxy" in argv and any(where in a for a in argv)
        if ours and not gone(int(proc.name)):
            found.append(int(proc.name))
    return found


def fresh_connections(url: str, n: int) -> list[str]:
    """`n` GETs, each on a new connection (the kernel picks a worker per connection)."""
    bodies = []
    for _ in range(n):
        r = httpx.get(url, timeout=10, headers={"Connection": "close"})
        assert r.status_code == 200, r.text
        bodies.append(r.text)
    return bodies


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    steps = [{"set_weight": 30}, {"pause": {}}, {"set_weight": 100}]
    ws = Workspace.create(tmp_path)
    spec = base_spec(ws.port, strategy={"canary": {"steps": steps}})
    spec["router"].update(workers=WORKERS, admin_listen=f"127.0.0.1:{free_port()}")
    ws.write_spec(spec)
    yield ws
    ws.teardown()


@pytest.mark.timeout(600)  # one long scenario: minutes on a busy 2-core machine
def test_two_workers_share_count_restart_recover_hold_and_stop(ws: Workspace) -> None:
    ws.zd("up", "--version", "v1")
    pids = [worker_pid(ws, n) for n in range(WORKERS)]
    assert serving(ws) == pids and len(set(pids)) == WORKERS

    # Both workers take connections; the merged counters are exactly what was sent.
    before = merged_requests(ws, "v1")
    fresh_connections(ws.url, 400)
    each = [requests_of(ws, n, "v1") for n in range(WORKERS)]
    assert all(n > 0 for n in each), each
    assert merged_requests(ws, "v1") - before == 400 == sum(each) - before

    # The TCP admin API (the first worker's) answers for every worker, and takes no changes.
    admin = "http://" + yaml.safe_load(ws.spec_file.read_text())["router"]["admin_listen"]
    stats = httpx.get(admin + "/stats").json()
    assert stats["releases"]["v1"]["requests"] == sum(each)
    assert stats["releases"]["v1"]["codes"]["200"] == sum(each)
    metrics = httpx.get(admin + "/metrics").text
    assert f'zerodown_requests_total{{release="v1",code="200"}} {sum(each)}\n' in metrics
    assert len(httpx.get(admin + "/samples", params={"release": "v1"}).json()) == sum(each)
    token = (ws.root / ".zerodown" / "token").read_text().strip()
    refused = httpx.post(admin + "/release", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 409, refused.text

    # A canary's weight holds on both workers (each routes its share by the same table).
    ws.zd("deploy", "v2")
    ws.wait_for(
        lambda: (r := ws.status()["status"]["rollout"])["phase"] == "paused" and r["step"] == 1,
        what="the canary's pause",
    )
    v2_before = [requests_of(ws, n, "v2") for n in range(WORKERS)]
    bodies = fresh_connections(ws.url, 600)
    share = sum(b.startswith("ok v2") for b in bodies) / len(bodies)
    assert 0.22 <= share <= 0.38, share
    v2_each = [requests_of(ws, n, "v2") - v2_before[n] for n in range(WORKERS)]
    assert all(n > 0 for n in v2_each), v2_each
    ws.zd("promote")
    ws.wait_for(lambda: ws.status()["status"]["stable"] == "v2", what="the canary to complete")

    # `zerodown router restart` under load: every worker hands its own socket over.
    with ws.load(connections=400, timeout=30) as load:
        time.sleep(0.5)
        said = ws.zd("router", "restart").stdout
        for old in pids:
            assert f"pid {old} handed its sockets to pid" in said, said
        for old in pids:
            ws.wait_for(lambda old=old: gone(old), what="the old workers to exit")
        time.sleep(0.5)
    assert load.report.total >= 600
    assert [(s.status, s.error) for s in load.report.failed] == []
    pids = [worker_pid(ws, n) for n in range(WORKERS)]
    assert serving(ws) == pids

    # kill -9 of one worker: the controller replaces it on the socket the dead one served.
    os.kill(pids[1], signal.SIGKILL)
    ws.wait_for(lambda: worker_pid(ws, 1) != pids[1], what="a new worker 1")
    ws.wait_for(lambda: serving(ws) == [pids[0], worker_pid(ws, 1)], what="a new worker 1 serving")
    replaced = requests_of(ws, 1, "v2")
    fresh_connections(ws.url, 200)
    assert requests_of(ws, 1, "v2") > replaced  # the new worker 1 takes its share

    # A hold holds on every worker; the release answers every held request.
    ws.zd("hold", "--max", "20s")
    answers: list[int] = []

    def held_get() -> None:
        answers.append(httpx.get(ws.url, timeout=30, headers={"Connection": "close"}).status_code)

    threads = [threading.Thread(target=held_get) for _ in range(40)]
    for t in threads:
        t.start()
    ws.wait_for(
        lambda: sum(worker_stats(ws, n)["hold"]["held"] for n in range(WORKERS)) == 40,
        what="40 requests held",
    )
    held = [worker_stats(ws, n)["hold"]["held"] for n in range(WORKERS)]
    assert all(n > 0 for n in held), held
    said = ws.zd("release").stdout
    assert said.startswith("released 40 held requests"), said
    for t in threads:
        t.join(30)
    assert answers == [200] * 40

    # `zerodown down` leaves no worker (nor a standby) running.
    ws.zd("down")
    assert routers_running(ws) == []
    assert ws.zd("down").stdout.strip() == "nothing is running"


def test_fewer_workers_stop_the_extra_ones_and_more_need_a_fresh_start(ws: Workspace) -> None:
    ws.zd("up", "--version", "v1")
    first, extra = worker_pid(ws, 0), worker_pid(ws, 1)
    spec = yaml.safe_load(ws.spec_file.read_text())

    # The controller goes away (the workers serve on); the next one runs one worker.
    os.kill(ws.controller_pid(), signal.SIGKILL)
    spec["router"]["workers"] = 1
    ws.write_spec(spec)
    ws.zd("up")
    ws.wait_for(lambda: gone(extra), what="the extra worker to stop")
    assert worker_pid(ws, 0) == first  # adopted, not restarted
    assert not Paths.for_spec(ws.spec_file).router_worker_pid(1).exists()
    fresh_connections(ws.url, 20)

    # A one-worker router started afresh binds its socket without SO_REUSEPORT: a controller
    # that wants two workers beside it says that the router must be stopped first.
    ws.zd("down")
    ws.zd("up")
    os.kill(ws.controller_pid(), signal.SIGKILL)
    spec["router"]["workers"] = 2
    ws.write_spec(spec)
    said = ws.zd("up", "--timeout", "8", check=False)
    assert said.returncode != 0
    assert "router.workers" in said.stdout + said.stderr, said
    fresh_connections(ws.url, 20)  # the running router serves on


def test_tls_preview_and_redirect_on_two_workers(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "site.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "site.crt"))
    preview, redirect = free_port(), free_port()
    ws = Workspace.create(tmp_path)
    spec = base_spec(
        ws.port,
        strategy={"blue_green": {"preview_listen": f"127.0.0.1:{preview}", "auto_promote": False}},
    )
    spec["router"].update(
        workers=WORKERS,
        tls={
            "certificates": [{"cert": "site.crt", "key": "site.key"}],
            "redirect_http": f"127.0.0.1:{redirect}",
        },
    )
    ws.write_spec(spec)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    try:
        ws.zd("up", "--version", "v1")
        ws.zd("deploy", "v2")
        ws.wait_for(
            lambda: (
                (s := ws.status())["status"]["rollout"]["phase"] == "paused" and s["routes_applied"]
            ),
            what="the preview to be ready",
        )
        before = [requests_of(ws, n, "v2") for n in range(WORKERS)]
        for _ in range(200):
            with httpx.Client(verify=ctx, timeout=10) as c:
                assert c.get(f"https://localhost:{preview}/").text == "ok v2\n"
                assert c.get(f"https://localhost:{ws.port}/").text == "ok v1\n"
        previewed = [requests_of(ws, n, "v2") - before[n] for n in range(WORKERS)]
        assert all(n > 0 for n in previewed) and sum(previewed) == 200, previewed
        plain = httpx.get(f"http://127.0.0.1:{redirect}/x")
        assert plain.status_code == 308
        assert plain.headers["location"].endswith(f":{ws.port}/x")
    finally:
        ws.teardown()
