"""What a user sees from `zerodown up` with router kind nginx and no nginx installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.workspace import Workspace

pytestmark = pytest.mark.slow


def test_up_without_nginx_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZERODOWN_NGINX", str(tmp_path / "no-nginx-here"))
    ws = Workspace.create(tmp_path, router_kind="nginx")
    result = ws.zd("up", "--version", "v1", check=False, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "zerodown.yaml:" in result.stderr and "router.kind:" in result.stderr
    assert "apt-get install nginx-light" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / ".zerodown" / "controller.json").exists()  # nothing was started
