from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosts import HostLab, host_lab, hosts_spec
from support.workspace import APP, Workspace


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[HostLab]:
    with host_lab(3, hide=(tmp_path,)) as made:
        yield made


@pytest.fixture
def hosted(tmp_path: Path, lab: HostLab) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path)
    shutil.copy(APP, ws.root / "app.py")
    ws.write_spec(hosts_spec(ws, lab))
    yield ws
    ws.teardown()
