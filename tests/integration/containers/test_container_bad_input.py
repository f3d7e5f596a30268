"""Bad input with containers, through the real CLI: no engine where DOCKER_HOST points is a
clear error (where zerodown looked, what to run) that fails the rollout, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.containers import APP_COMMAND
from support.workspace import Workspace, base_spec

pytestmark = pytest.mark.slow


def test_no_engine_socket_fails_the_first_rollout_saying_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "nothing" / "podman.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{nowhere}")
    ws = Workspace.create(tmp_path)
    spec = base_spec(ws.port)
    spec["platform"] = {"kind": "container"}
    spec["run"] = {"image": "localhost/shop:{version}", "command": APP_COMMAND}
    ws.write_spec(spec)
    try:
        result = ws.zd("up", "--version", "v1", "--timeout", "60s", check=False)
    finally:
        ws.teardown()
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 3, said
    assert f"no container engine socket at {nowhere}" in said
    assert "podman system service --time 0" in said and "Traceback" not in said
