"""Issue 14: a host that stops answering mid-rollout, and a controller killed mid-rollout on
hosts."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from support.hosts import HostLab
from support.workspace import Workspace

pytestmark = pytest.mark.slow

LOGS = "/tmp/zerodown/shop/logs"


def routed_hosts(ws: Workspace, lab: HostLab) -> set[str]:
    by_address = {h.address: h.name for h in lab.hosts}
    pools = ws.status()["status"]["routes"]["pools"]
    return {by_address[b["address"].rpartition(":")[0]] for p in pools for b in p["backends"]}


def events(ws: Workspace) -> list[str]:
    url = json.loads((ws.root / ".zerodown" / "controller.json").read_text())["url"]
    return [e["message"] for e in httpx.get(f"{url}/api/events?limit=1000", timeout=30).json()]


def test_host_link_down_mid_rollout(hosted: Workspace, lab: HostLab) -> None:
    try:
        _link_down_mid_rollout(hosted, lab)
    finally:
        lab.link_up("web2")  # so that `zerodown down` can stop what runs there


def _link_down_mid_rollout(hosted: Workspace, lab: HostLab) -> None:
    hosted.zd("up", "--version", "v1")
    web2 = lab.host("web2").address
    on_web2 = [i["id"] for i in hosted.status()["instances"] if i["address"].startswith(web2)]
    with hosted.load() as load:
        time.sleep(0.5)
        hosted.zd("deploy", "v-slow-start")
        hosted.wait_for(
            lambda: any(i["release"] == "v-slow-start" for i in hosted.status()["instances"]),
            what="the first launch",
        )
        lab.link_down("web2")
        down_at = time.time()
        hosted.wait_for(lambda: "web2" not in routed_hosts(hosted, lab), what="web2 out")
        out_at = time.time()
        hosted.zd("deploy", "v-slow-start", "--wait", timeout=90)  # the rollout completes
        time.sleep(0.5)
    report = load.report
    failed = report.failed
    print(
        f"link of web2 down mid-rollout: {len(failed)} of {report.total} requests failed;"
        f" web2 left the routes {out_at - down_at:.2f}s after its link went down"
    )
    # Only requests sent to web2 before it left the routes can fail (its link died under them).
    assert all(down_at - 0.5 <= s.at <= out_at + 0.5 for s in failed), failed[:3]
    assert hosted.status()["status"]["stable"] == "v-slow-start"
    instances = hosted.status()["instances"]
    serving = {i["address"].rpartition(":")[0] for i in instances if i["ready"]}
    assert web2 not in serving
    assert sum(1 for i in instances if i["ready"] and i["release"] == "v-slow-start") == 3
    status = hosted.zd("status").stdout
    assert "web2" in status and "DOWN" in status, status
    log = events(hosted)
    assert any("host web2 is not answering" in m for m in log), log
    assert any(f"retire {on_web2[0]}" in m for m in log), log  # replaced on the others
    # Back up: it answers again, and what ran there is stopped.
    lab.link_up("web2")
    hosted.wait_for(
        lambda: all(h["up"] for h in hosted.status()["hosts"]), what="web2 to answer again"
    )
    hosted.wait_for(
        lambda: (
            sorted(i["address"].rpartition(".")[0] for i in hosted.status()["instances"])
            == sorted(h.address.rpartition(".")[0] for h in lab.hosts)
        ),
        timeout=60,
        what="web2's stale instance stopped and one instance moved back to it",
    )
    assert "DOWN" not in hosted.zd("status").stdout


def test_controller_kill_9_mid_rollout_on_hosts(hosted: Workspace, lab: HostLab) -> None:
    hosted.zd("up", "--version", "v1")
    with hosted.load() as load:
        time.sleep(0.5)
        hosted.zd("deploy", "v-slow-start")
        hosted.wait_for(
            lambda: any(i["release"] == "v-slow-start" for i in hosted.status()["instances"]),
            what="the first launch",
        )
        os.kill(hosted.controller_pid(), signal.SIGKILL)
        time.sleep(0.5)  # the router and the instances keep serving without the controller
        hosted.zd("up")
        hosted.zd("deploy", "v-slow-start", "--wait")
        done = time.time()
        time.sleep(1)
    assert [(s.status, s.error) for s in load.report.failed] == []
    assert set(load.report.versions(since=done)) == {"v-slow-start"}
    # Nothing launched twice: each host ran exactly one instance of the new release.
    for host in lab.hosts:
        launched = lab.run(host.name, f"ls {LOGS}").split()
        assert len([n for n in launched if n.startswith("shop-v-slow-start-")]) == 1, launched
