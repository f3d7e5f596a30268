"""A browser smoke check in a real rollout: Chromium loads the page of the new release before it
gets traffic, and again through the router once promoted; a failure stops the rollout before any
user sees the release, with a screenshot kept in .zerodown/screenshots/."""

from __future__ import annotations

import importlib.util
import time

import pytest

from support.services import require
from support.workspace import Workspace, base_spec
from zerodown.checkers.browser import chromium

pytestmark = pytest.mark.slow


def test_a_page_that_does_not_show_its_text_stops_the_rollout(workspace: Workspace) -> None:
    if importlib.util.find_spec("playwright") is None or chromium() is None:
        require("browser smoke checks need playwright and Chromium (Debian package chromium)")
    # The sample app answers "ok VERSION": v1 shows "ok v1", v2 does not.
    smoke = {"checks": [{"name": "home", "browser": {"path": "/", "text": "ok v1"}}]}
    workspace.write_spec(base_spec(workspace.port, smoke=smoke))
    workspace.zd("up", "--version", "v1")
    checks = workspace.status()["status"]["rollout"]["checks"]
    assert checks["smoke:post"]["state"] == "passed", checks  # through the router, promoted
    assert f"127.0.0.1:{workspace.port}" in checks["smoke:post"]["reason"]

    with workspace.load() as load:
        time.sleep(1)
        result = workspace.zd("deploy", "v2", "--wait", check=False)
        time.sleep(1)
    assert result.returncode == 3, result.stdout + result.stderr
    rollout = workspace.status()["status"]["rollout"]
    assert rollout["reason"].startswith("smoke:pre failed"), rollout["reason"]
    says = rollout["checks"]["smoke:pre"]["reason"]
    assert "/: the page does not show 'ok v1'; it shows 'ok v2'" in says, says
    (shot,) = (workspace.root / ".zerodown" / "screenshots").iterdir()
    assert f"screenshot: {shot}" in says and shot.read_bytes().startswith(b"\x89PNG")
    assert load.report.failed == []
    assert set(load.report.versions()) == {"v1"}  # v2 never got a real request
