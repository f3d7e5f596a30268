"""The router runs what the status says, whatever happened to it: a table changed behind the
controller's back (or a router restarted from a state file older than its last table) is put
right within seconds, and the decision log says so. Found by bench/chaos.py: after a kill -9 of
the router, a stale table kept sending traffic to instances that were gone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.workspace import Workspace

pytestmark = pytest.mark.slow


def router_admin(ws: Workspace) -> httpx.Client:
    socket = ws.root / ".zerodown" / "router.sock"
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://router", timeout=5
    )


def routing(table: dict[str, Any]) -> Any:
    return [(p["release"], sorted(b["address"] for b in p["backends"])) for p in table["pools"]]


def test_a_table_changed_behind_the_controllers_back_is_put_right(workspace: Workspace) -> None:
    workspace.zd("up", "--version", "v1")
    wanted = workspace.status()["status"]["routes"]
    with router_admin(workspace) as admin:
        # Same generation, no backends: what a stale restore or a stray tool leaves behind.
        stray = {**wanted, "pools": [{**wanted["pools"][0], "backends": []}]}
        assert admin.put("/routes", json=stray).status_code == 200
        assert routing(admin.get("/routes").json()) != routing(wanted)
        workspace.wait_for(
            lambda: routing(admin.get("/routes").json()) == routing(wanted),
            timeout=30,
            what="the controller to apply its table again",
        )
    events = [e for e in workspace.status()["events"] if e["kind"] == "routes"]
    assert events and events[-1]["message"] == (
        f"the router ran another table; applied generation {wanted['generation']} again"
    )
