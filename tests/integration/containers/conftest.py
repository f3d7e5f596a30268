from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from container_kit import container_spec, remove_containers

from support.containers import Engine
from support.workspace import Workspace


@pytest.fixture
def workspace(
    tmp_path: Path, container_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A service of the sample app in containers, its controller finding Podman's service
    through DOCKER_HOST (inherited by `zerodown up`)."""
    monkeypatch.setenv("DOCKER_HOST", container_engine.docker_host)
    ws = Workspace.create(tmp_path)
    ws.write_spec(container_spec(ws.port, container_engine))
    try:
        yield ws
    finally:
        ws.teardown()
        remove_containers(container_engine, ws)
