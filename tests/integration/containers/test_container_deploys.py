"""Issue 14's container proof on one machine: the sample app as containers on Podman's
Docker-compatible service, deployed by rolling, blue-green (on a bridge network) and canary
under a steady 300 requests/s with exactly 0 failed requests; a missing image fails its rollout
before any old instance leaves; a controller killed mid-rollout adopts its containers."""

from __future__ import annotations

import os
import signal
import time

import pytest
from container_kit import container_spec, containers

from support.containers import Engine
from support.workspace import Workspace

pytestmark = pytest.mark.slow

CANARY = {"canary": {"steps": [{"set_weight": 50}, {"pause": {"duration": "1s"}}]}}


def test_rolling_blue_green_and_canary_with_containers_fail_no_request(
    workspace: Workspace, container_engine: Engine
) -> None:
    spec = container_spec(workspace.port, container_engine, strategy=CANARY)
    workspace.write_spec(spec)
    workspace.zd("up", "--version", "v1")
    with workspace.load() as load:
        time.sleep(1)
        workspace.zd("deploy", "v2", "--strategy", "rolling", "--wait")
        # blue-green onto a bridge network: the app listens on 0.0.0.0 inside, published on a
        # free port of 127.0.0.1
        bridged = {**spec["run"], "network": "bridge", "port": 8000}
        bridged["env"] = {**spec["run"]["env"], "APP_HOST": "0.0.0.0"}
        bridged["command"] = [*spec["run"]["command"][:2], "8000", "{version}"]
        workspace.write_spec({**spec, "run": bridged})
        workspace.zd("deploy", "v3", "--strategy", "blue-green", "--wait")
        workspace.write_spec(spec)
        workspace.zd("deploy", "v4", "--wait")  # the spec's canary
        before = {c["Id"] for c in containers(container_engine, workspace)}
        missing = workspace.zd("deploy", "v-missing", "--wait", check=False)
        done = time.time()
        time.sleep(1)
    report = load.report
    print(f"containers: {report.total} requests, {len(report.failed)} failed")
    assert report.total >= 300 * 8
    assert [(s.status, s.error) for s in report.failed] == []
    assert {"v1", "v2", "v3", "v4"} <= set(report.versions())
    assert set(report.versions(since=done)) == {"v4"}
    # the missing image: failed before anything started or left, the engine's answer as reason
    assert missing.returncode == 3, missing.stdout + missing.stderr
    said = " ".join(missing.stderr.split())
    assert f"cannot pull image {container_engine.repository}:v-missing" in said, said
    assert {c["Id"] for c in containers(container_engine, workspace)} == before
    status = workspace.status()
    assert status["status"]["stable"] == "v4"
    workspace.wait_for(
        lambda: {i["release"] for i in workspace.status()["instances"]} == {"v4"},
        what="v3's environment to leave",
        timeout=60,
    )


def test_controller_kill_9_mid_rollout_adopts_its_containers(
    workspace: Workspace, container_engine: Engine
) -> None:
    spec = container_spec(workspace.port, container_engine, instances=3)
    workspace.write_spec(spec)
    workspace.zd("up", "--version", "v1")

    def running(version: str) -> list[dict[str, object]]:
        return [
            c
            for c in containers(container_engine, workspace)
            if c["Labels"]["zerodown.release"] == version and c["State"] == "running"
        ]

    with workspace.load() as load:
        time.sleep(1)
        workspace.zd("deploy", "v-slow-start")
        workspace.wait_for(lambda: running("v-slow-start"), what="the first container")
        os.kill(workspace.controller_pid(), signal.SIGKILL)
        time.sleep(1)  # the router and the containers keep serving without the controller
        workspace.zd("up")
        workspace.zd("deploy", "v-slow-start", "--wait")  # attaches to the resumed rollout
        done = time.time()
        time.sleep(1)
    assert [(s.status, s.error) for s in load.report.failed] == []
    assert set(load.report.versions(since=done)) == {"v-slow-start"}
    status = workspace.status()
    assert status["status"]["stable"] == "v-slow-start"
    workspace.wait_for(lambda: not running("v1"), what="v1's containers to go")
    # nothing launched twice: every container of the state directory is one the store knows
    ours = containers(container_engine, workspace)
    assert sorted(c["Id"] for c in ours) == sorted(i["handle"] for i in status["instances"])
    assert len(ours) == 3 and all(c["State"] == "running" for c in ours)
