"""Issue 14's container proof on one machine, in one run (each deploy costs seconds of real
containers): the sample app as containers on Podman's Docker-compatible service, under a steady
300 requests/s with exactly 0 failed requests, through

- a rolling deploy, a blue-green one onto a bridge network and a canary;
- a controller killed with SIGKILL in the middle of the canary: the next one adopts the
  containers by their labels and launches nothing twice;
- a release whose image is missing: its rollout fails before anything starts or leaves, with the
  engine's answer as the reason."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from container_kit import container_spec, containers

from support.containers import Engine
from support.workspace import Workspace

pytestmark = pytest.mark.slow

CANARY = {"canary": {"steps": [{"set_weight": 50}, {"pause": {"duration": "2s"}}]}}


def bridged(run: dict[str, Any]) -> dict[str, Any]:
    """The same app on a bridge network: it listens on 0.0.0.0:8000 inside its container, and
    zerodown publishes that port on a free port of 127.0.0.1."""
    return {
        **run,
        "network": "bridge",
        "port": 8000,
        "env": {**run["env"], "APP_HOST": "0.0.0.0"},
        "command": [*run["command"][:2], "8000", "{version}"],
    }


def test_rolling_blue_green_canary_kill_9_and_a_missing_image_fail_no_request(
    workspace: Workspace, container_engine: Engine
) -> None:
    spec = container_spec(workspace.port, container_engine, strategy=CANARY)
    workspace.write_spec(spec)
    workspace.zd("up", "--version", "v1")

    def running(version: str) -> list[dict[str, Any]]:
        return [
            c
            for c in containers(container_engine, workspace)
            if c["Labels"]["zerodown.release"] == version and c["State"] == "running"
        ]

    with workspace.load() as load:
        time.sleep(1)
        workspace.zd("deploy", "v2", "--strategy", "rolling", "--wait")
        workspace.write_spec({**spec, "run": bridged(spec["run"])})
        workspace.zd("deploy", "v3", "--strategy", "blue-green", "--wait")
        workspace.write_spec(spec)
        workspace.zd("deploy", "v4")  # the spec's canary
        workspace.wait_for(lambda: running("v4"), what="the canary's container")
        os.kill(workspace.controller_pid(), signal.SIGKILL)
        time.sleep(0.5)  # the router and the containers serve on without a controller
        workspace.zd("up")
        workspace.zd("deploy", "v4", "--wait")  # attaches to the resumed rollout
        before = {c["Id"] for c in containers(container_engine, workspace)}
        missing = workspace.zd("deploy", "v-missing", "--wait", check=False)
        after = {c["Id"] for c in containers(container_engine, workspace)}
        done = time.time()
        time.sleep(1)
    report = load.report
    print(f"containers: {report.total} requests, {len(report.failed)} failed")
    assert report.total >= 300 * 5
    assert [(s.status, s.error) for s in report.failed] == []
    assert {"v1", "v2", "v3", "v4"} <= set(report.versions())
    assert set(report.versions(since=done)) == {"v4"}

    # the missing image: the engine's answer, and no container started or left for it
    assert missing.returncode == 3, missing.stdout + missing.stderr
    said = " ".join(missing.stderr.split())
    assert f"cannot pull image {container_engine.repository}:v-missing" in said, said
    assert after == before

    # adopted, nothing launched twice: once the blue-green environment has gone, every
    # container of the state directory is one the store knows, and each runs v4
    workspace.wait_for(lambda: not running("v3"), what="v3's environment to go", timeout=60)
    status = workspace.status()
    assert status["status"]["stable"] == "v4"
    ours = containers(container_engine, workspace)
    assert sorted(c["Id"] for c in ours) == sorted(i["handle"] for i in status["instances"])
    assert len(ours) == 2 and {c["Labels"]["zerodown.release"] for c in ours} == {"v4"}
