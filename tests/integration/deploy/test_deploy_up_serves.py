"""Once zerodown says a release serves, the router serves it: no request fails after that.

The controller saves a decision before it applies its routes; nginx applies a table by a reload
(a few hundred milliseconds), answering with its starting table (no backend: 503) meanwhile.
The status alone used to be the claim: `stable` was there before nginx routed to it, and `up`,
polling it, could return inside that window.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from support.routers import every_router
from support.workspace import Workspace

pytestmark = pytest.mark.slow


def serves(state: dict[str, Any], version: str) -> bool:
    """The claim a user (or `zerodown up`) reads: stable, and the router runs that table."""
    return state["status"]["stable"] == version and state.get("routes_applied") is not False


@every_router
def test_no_request_fails_once_zerodown_says_the_release_serves(workspace: Workspace) -> None:
    # Clients from the very start: refused until the router listens, then kept alive across
    # its table changes (browser-like on nginx, see Workspace.load).
    with workspace.load(rate=200) as load, ThreadPoolExecutor(1) as pool:
        up = pool.submit(workspace.zd, "up", "--version", "v1")
        claimed = None
        while claimed is None and not up.done():  # the status as often as a script may read it
            try:
                if serves(workspace.status(), "v1"):
                    claimed = time.time()
            except (OSError, ValueError, httpx.HTTPError):
                pass  # no controller yet
        up.result()
        returned = time.time()
        claimed = claimed or returned
        assert serves(workspace.status(), "v1")
        workspace.wait_for(
            lambda: sum(s.at >= returned for s in load.report.samples) >= 100,
            what="100 requests sent after up returned",
        )
    after = [s for s in load.report.samples if s.at >= claimed]
    assert [(s.status, s.error) for s in after if s.failed] == []
    assert {s.version for s in after} == {"v1"}
