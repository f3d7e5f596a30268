from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosts import HostLab, host_lab, hosts_spec, kill_controller
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
    # No `zerodown down` (the strategies test runs it and checks every host): the controller
    # and the router are killed here, and the lab's teardown kills everything on the hosts.
    kill_controller(ws)
