"""Issue 13's proof for the router's own operations, through the CLI under 300 requests/s:
`zerodown router restart` and `zerodown hold` / `release` fail no request; a router killed -9
is started again by the controller."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
import yaml

from support.workspace import Workspace
from zerodown.procfs import running

pytestmark = pytest.mark.slow


def router_pid(ws: Workspace) -> int:
    return int((ws.root / ".zerodown" / "router.pid").read_text())


def gone(pid: int) -> bool:
    return not running(pid)


def test_router_restart_hold_release_and_kill_9(workspace: Workspace) -> None:
    ws = workspace
    ws.zd("up", "--version", "v1")
    first = router_pid(ws)
    with ws.load(connections=400, timeout=30) as load:
        t0 = time.time()
        time.sleep(0.5)
        marks = {"restart": time.time() - t0}
        said = ws.zd("router", "restart").stdout
        marks["restarted"] = time.time() - t0
        assert f"pid {first} handed its sockets to pid" in said, said
        ws.wait_for(lambda: gone(first), what="the old router to exit")
        assert router_pid(ws) != first
        marks["old gone"] = time.time() - t0
        said = ws.zd("hold", "--max", "20s").stdout
        assert "holding new requests for at most 20s" in said, said
        marks["held"] = time.time() - t0
        time.sleep(5)
        said = ws.zd("release").stdout
        marks["released"] = time.time() - t0
        assert said.startswith("released ") and "held request" in said, said
        time.sleep(0.5)
    report = load.report
    assert report.total >= 600
    assert [(round(s.at - t0, 2), s.status, s.error) for s in report.failed][:20] == [], marks
    assert ws.zd("hold", "--max", "2h", check=False).returncode == 2
    held = [s for s in report.samples if marks["held"] <= s.at - t0 <= marks["released"]]
    assert len(held) >= 300  # requests sent during the hold, all answered (above)

    # A canary step that holds traffic for a named time, under load.
    spec = yaml.safe_load(ws.spec_file.read_text())
    spec["strategy"] = {
        "canary": {"steps": [{"set_weight": 50}, {"hold": "2s"}, {"set_weight": 100}]}
    }
    ws.write_spec(spec)
    with ws.load(connections=400, timeout=30) as load:
        time.sleep(0.5)
        ws.zd("deploy", "v2", "--wait")
    assert [(s.status, s.error) for s in load.report.failed] == []
    checks = ws.status()["status"]["rollout"]["checks"]
    assert checks["hold:step-2"]["state"] == "passed", checks
    assert checks["hold:step-2"]["reason"].startswith("held "), checks

    # kill -9: the controller starts another router (the figure is measured in bench/).
    second = router_pid(ws)
    os.kill(second, signal.SIGKILL)
    ws.wait_for(lambda: router_pid(ws) != second, what="a new router")
    ws.wait_for(lambda: httpx.get(ws.url, timeout=5).status_code == 200, what="serving again")
