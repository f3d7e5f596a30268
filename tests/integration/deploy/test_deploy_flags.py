"""Issue 6, tied to the rollout: a canary step changes a flag; an abort reverts it, and the
decision log says so."""

from __future__ import annotations

import json

import httpx
import pytest

from support.workspace import Workspace, base_spec

pytestmark = pytest.mark.slow


def controller(ws: Workspace) -> tuple[str, dict[str, str]]:
    state = ws.root / ".zerodown"
    url = json.loads((state / "controller.json").read_text())["url"]
    token = (state / "token").read_text().strip()
    return url, {"Authorization": f"Bearer {token}"}


def test_flag_step_is_reverted_when_the_rollout_aborts(workspace: Workspace) -> None:
    steps = [
        {"set_flag": {"key": "new-checkout", "rollout": "10%"}},
        {"set_weight": 20},
        {"pause": {}},
    ]
    workspace.write_spec(base_spec(workspace.port, strategy={"canary": {"steps": steps}}))
    workspace.zd("up", "--version", "v1")
    url, auth = controller(workspace)
    with httpx.Client(base_url=url, headers=auth) as api:
        created = api.post("/api/flags", json={"key": "new-checkout", "enabled": False})
        assert created.status_code == 201, created.text
        before = api.get("/api/flags/new-checkout").json()
        workspace.zd("deploy", "v2")
        workspace.wait_for(
            lambda: workspace.status()["status"]["rollout"]["phase"] == "paused",
            what="the pause",
        )
        during = api.get("/api/flags/new-checkout").json()
        assert during != before
        assert "10" in json.dumps(during["strategies"])
        workspace.zd("abort")
        workspace.wait_for(
            lambda: (
                workspace.status()["status"]["rollout"]["checks"]
                .get("flags:revert", {})
                .get("state")
                == "passed"
            ),
            what="the flag revert",
        )
        after = api.get("/api/flags/new-checkout").json()
        audit = api.get("/api/flags/audit").json()
    assert (after["enabled"], after["strategies"]) == (before["enabled"], before["strategies"])
    events = [e["message"] for e in workspace.status()["events"]]
    assert any("flags:revert: passed" in m and "new-checkout: reverted" in m for m in events), (
        events
    )
    assert "revert flag:step-1" in json.dumps(audit)  # the audit log says who and why
