from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.routers import require_router
from support.workspace import Workspace


@pytest.fixture
def router_kind(request: pytest.FixtureRequest) -> str:
    """builtin, unless the test is marked `every_router` (support/routers.py)."""
    kind: str = getattr(request, "param", "builtin")
    require_router(kind)
    return kind


@pytest.fixture
def workspace(tmp_path: Path, router_kind: str) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path, router_kind=router_kind)
    yield ws
    ws.teardown()
