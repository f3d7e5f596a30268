"""GET /api/plan on a real controller: the rollback plan of the next deploy (nothing under way),
as `zerodown plan` computes it; its read token rules are in test_api_read_token.py."""

from __future__ import annotations

from pathlib import Path

import httpx
from controller_api import serve_controller


def test_plan_of_the_next_deploy(tmp_path: Path) -> None:
    with serve_controller(tmp_path) as api, httpx.Client(base_url=api.url, timeout=10) as http:
        plan = http.get("/api/plan").json()
        status = http.get("/api/status").json()
    assert plan["current"] is False and plan["version"] is None
    assert plan["service"] == status["service"]
    assert plan["strategy"] == "rolling"
    assert plan["how"] == "nothing to go back to: no release has completed a rollout yet"
    assert plan["who"][0].startswith("anyone holding the admin token")
    assert {t["kind"] for t in plan["triggers"]} >= {"probe", "progress-deadline"}
    assert status["caution"] == ""
