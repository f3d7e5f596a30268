"""Issue 18's proof through a real rollout: the sequential judge watches every request of the
canary and the baseline through the router, and aborts a bad canary with its reason recorded."""

from __future__ import annotations

import time
from typing import Any

import pytest

from support.workspace import Workspace, base_spec

pytestmark = pytest.mark.slow

ERRORS = {
    "name": "errors",
    "provider": "router",
    "judge": {"sequential": {"metric": "error_rate", "max_increase": "1%", "false_abort": "1%"}},
    "interval": "500ms",
}
LATENCY = {
    "name": "latency",
    "provider": "router",
    "judge": {
        "sequential": {
            "metric": "latency",
            "stochastic_order": "canary_slower",
            "false_abort": "1%",
        }
    },
    "interval": "500ms",
}


def watched(port: int) -> dict[str, Any]:
    return base_spec(
        port,
        analysis={"templates": {"health": {"metrics": [ERRORS, LATENCY]}}},
        strategy={
            "canary": {
                "analysis": {"templates": ["health"]},
                "steps": [{"set_weight": 25}, {"pause": {"duration": "2m"}}, {"set_weight": 100}],
            }
        },
    )


def test_a_failing_canary_is_aborted_by_the_sequential_judge(workspace: Workspace) -> None:
    workspace.write_spec(watched(workspace.port))
    workspace.zd("up", "--version", "v1")
    with workspace.load() as load:
        time.sleep(1)
        result = workspace.zd("deploy", "v-failing", "--wait", check=False)
        time.sleep(1)
    assert result.returncode == 4, result.stdout + result.stderr
    rollout = workspace.status()["status"]["rollout"]
    assert rollout["phase"] == "aborted"
    assert (
        "errors: sequential: error rate above baseline + 1% (99% confidence)" in (rollout["reason"])
    ), rollout["reason"]
    check = rollout["checks"]["analysis:background"]
    assert check["state"] == "failed"
    failing = check["detail"]["result"]["metrics"][0]
    assert failing["name"] == "errors" and failing["phase"] == "failed"
    # what the user reads: the reason, in `zerodown status`
    shown = workspace.zd("status").stdout
    assert "sequential: error rate above baseline" in shown, shown
    failed = load.report.failed
    print(f"canary failing 20% at weight 25: {len(failed)} of {load.report.total} failed")
    assert all(s.version == "v-failing" for s in failed)  # only the canary's own errors
    assert workspace.status()["status"]["stable"] == "v1"
