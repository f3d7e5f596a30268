from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path)
    yield ws
    ws.teardown()
