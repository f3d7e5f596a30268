"""`zerodown up` returns once the router serves the release, never before.

The controller saves a decision before it applies its routes; nginx applies a table by a reload
(a few hundred milliseconds), answering with its starting table, no backend: 503, meanwhile. Up
used to return on the saved status alone: requests right after it could get those 503s.
"""

from __future__ import annotations

import time

import pytest

from support.routers import every_router
from support.workspace import Workspace

pytestmark = pytest.mark.slow


@every_router
def test_no_request_fails_once_up_returns(workspace: Workspace) -> None:
    # Clients from the very start: refused until the router listens, then kept alive across
    # its table changes (browser-like on nginx, see Workspace.load).
    with workspace.load(rate=200) as load:
        workspace.zd("up", "--version", "v1")
        returned = time.time()
        assert workspace.status()["routes_applied"] is True
        workspace.wait_for(
            lambda: sum(s.at >= returned for s in load.report.samples) >= 100,
            what="100 requests sent after up returned",
        )
    after = [s for s in load.report.samples if s.at >= returned]
    assert [(s.status, s.error) for s in after if s.failed] == []
    assert {s.version for s in after} == {"v1"}
