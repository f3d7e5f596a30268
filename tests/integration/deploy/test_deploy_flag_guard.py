"""Issue 6's guarded rollout through a real `zerodown up`: the router counts each flag variant,
the controller's guard compares `on` against `off`, and a regression kills the flag in seconds."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.routers import every_router
from support.workspace import Workspace, base_spec
from zerodown.loadgen import LoadGenerator

pytestmark = pytest.mark.slow

FLAGAPP = Path(__file__).resolve().parents[3] / "src" / "zerodown" / "demo" / "flagapp.py"
ERRORS = {
    "name": "on-errors",
    "provider": "router",
    "query": "error_rate",
    "interval": "1s",
    "failure_condition": "result > 0.05",
    "min_samples": 10,
}


@every_router
def test_a_regressing_flag_is_killed_by_its_guard(workspace: Workspace) -> None:
    spec = base_spec(
        workspace.port,
        analysis={"templates": {"checkout": {"metrics": [ERRORS]}}},
        flag_guards=[{"flag": "new-checkout", "analysis": {"templates": ["checkout"]}}],
    )
    spec["run"]["command"] = [sys.executable, str(FLAGAPP), "{port}", "{version}"]
    spec["run"]["env"] = {"FLAGAPP_FAIL_RATE": "0.2"}
    spec["probes"] = {"readiness": {"http": "/ready", "period": "500ms"}}
    workspace.write_spec(spec)
    workspace.zd("up", "--version", "v1")
    state = workspace.root / ".zerodown"
    url = json.loads((state / "controller.json").read_text())["url"]
    auth = {"Authorization": f"Bearer {(state / 'token').read_text().strip()}"}
    flag = {
        "key": "new-checkout",
        "enabled": True,
        "strategies": [{"kind": "gradual_rollout", "rollout": 30, "stickiness": "random"}],
    }
    with httpx.Client(base_url=url, headers=auth) as api:
        assert api.post("/api/flags", json=flag).status_code == 201
        with LoadGenerator(
            workspace.url + "checkout",
            rate=150,
            max_seconds=60,
            browser_like=workspace.router_kind == "nginx",  # see Workspace.load
        ) as load:
            killed = workspace.wait_for(
                lambda: not api.get("/api/flags/new-checkout").json()["enabled"],
                timeout=30,
                what="the guard to kill the flag",
            )
            killed_at = time.time()
            time.sleep(1.5)
        audit = json.dumps(api.get("/api/flags/audit").json())
    assert killed
    failed = [s for s in load.report.samples if s.failed]
    assert failed, "the on path should have failed some requests"
    print(
        f"guard: flag killed {killed_at - failed[0].at:.2f}s after the first failed `on` response; "
        f"{len(failed)} requests failed"
    )
    assert not [s for s in failed if s.at > killed_at + 1.0]  # off is healthy
    assert "zerodown guard" in audit
    events = [e["message"] for e in workspace.status()["events"]]
    assert any("new-checkout killed" in m for m in events)
