from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.workspace import Workspace

DecisionLog = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path)
    yield ws
    ws.teardown()


@pytest.fixture
def decision_log(workspace: Workspace) -> DecisionLog:
    """The whole decision log, from the API (status shows only its last 20 entries)."""

    def read() -> list[dict[str, Any]]:
        state = workspace.root / ".zerodown"
        url = json.loads((state / "controller.json").read_text())["url"]
        response = httpx.get(url + "/api/events", params={"limit": 1000}, timeout=30)
        response.raise_for_status()
        return list(response.json())

    return read
