"""A release that cannot even start (its command does not exist): the rollout fails with that
reason, the old release keeps serving, nothing hangs. This used to crash the engine, and the
controller then stopped the router. (An environment larger than the kernel takes cannot come
from a spec any more, whose strings are capped: test_local_platform.py launches one directly.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from support.workspace import Workspace

pytestmark = pytest.mark.slow


def with_run(workspace: Workspace, **run: Any) -> None:
    spec = yaml.safe_load(workspace.spec_file.read_text())
    spec["run"] = {**spec["run"], **run}
    workspace.write_spec(spec)


def words(text: str) -> str:
    return " ".join(text.split())  # the CLI wraps long lines


def test_releases_that_cannot_launch_fail_and_the_old_one_keeps_serving(
    workspace: Workspace,
) -> None:
    workspace.zd("up", "--version", "v1")
    with workspace.load() as load:
        time.sleep(1)
        with_run(workspace, command=["/nonexistent/zerodown-app", "{port}"])
        missing = workspace.zd("deploy", "v2", "--wait", check=False)
        time.sleep(1)
    assert missing.returncode == 3, missing.stdout + missing.stderr
    assert "'/nonexistent/zerodown-app': not found" in words(missing.stderr)
    assert [(s.status, s.error) for s in load.report.failed] == []
    assert set(load.report.versions()) == {"v1"}
    status = workspace.status()
    assert status["status"]["stable"] == "v1"
    assert status["status"]["rollout"]["phase"] == "failed"
    assert status["controller"]["last_error"] is None  # a failed launch is not an engine fault
    workspace.wait_for(
        lambda: {i["release"] for i in workspace.status()["instances"]} == {"v1"},
        what="the instances that never started to leave",
    )


def test_a_first_release_that_cannot_launch_fails_instead_of_hanging(
    workspace: Workspace,
) -> None:
    with_run(workspace, command=["/nonexistent/zerodown-app"])
    result = workspace.zd("up", "--version", "v1", check=False, timeout=60)
    assert result.returncode != 0, result.stdout
    assert "not found" in result.stdout + result.stderr
    rollout = workspace.status()["status"]["rollout"]
    assert rollout["phase"] == "failed" and "not found" in rollout["reason"]
    workspace.zd("down", timeout=60)  # and down still finishes
