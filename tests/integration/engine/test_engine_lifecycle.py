"""The controller's life around its faults: a version that could name a path is refused before
anything is recorded; a router that died while no controller ran is back at the next `up`; `down`
always finishes; a pass that fails (the router's admin socket gone) is recorded and retried while
the service keeps serving; the log is quiet at idle and can be JSON."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.workspace import Workspace
from zerodown.api.controller import Controller
from zerodown.core.errors import SpecError
from zerodown.paths import Paths
from zerodown.platforms.local import proc_start_ticks
from zerodown.spec.load import load_spec


@pytest.mark.parametrize("version", ["x/y", "../../etc/passwd", "v" * 300, "", "v1\n", "v 1"])
def test_deploy_of_an_invalid_version_is_refused_and_nothing_recorded(
    tmp_path: Path, version: str
) -> None:
    ws = Workspace.create(tmp_path)  # the spec only: no process is started
    controller = Controller(Paths.for_spec(ws.spec_file), load_spec(ws.spec_file))
    try:
        spec = load_spec(ws.spec_file).model_dump(mode="json")
        with pytest.raises(SpecError, match=r"version: version .* is not valid"):
            controller.deploy(version=version, spec=spec, strategy=None, who="test")
        assert controller.store.revisions("shop") == []
        assert controller.store.events("shop") == []
        assert controller.status().rollout is None
    finally:
        controller.store.close()


@pytest.mark.slow
def test_router_killed_while_the_controller_is_down_is_back_at_the_next_up(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZERODOWN_LOG_FORMAT", "json")  # inherited by the controller
    workspace.zd("up", "--version", "v1")
    router_pid = int((workspace.root / ".zerodown" / "router.pid").read_text())
    os.kill(workspace.controller_pid(), signal.SIGKILL)
    os.kill(router_pid, signal.SIGKILL)
    workspace.wait_for(lambda: _refused(workspace.url), what="the router's port to close")
    workspace.zd("up")
    assert httpx.get(workspace.url, timeout=5).text == "ok v1\n"
    with workspace.load(rate=100) as load:
        time.sleep(2)
    assert load.report.total > 100 and load.report.failed == []

    log = (workspace.root / ".zerodown" / "logs" / "controller.log").read_text().splitlines()
    second_run = [json.loads(line) for line in log if line.startswith("{")]
    assert second_run and all(set(e) >= {"ts", "level", "logger", "message"} for e in second_run)
    assert any("router started" in e["message"] for e in second_run)
    # Quiet at idle: no line per router health check, per probe or per status request.
    assert not [e for e in second_run if e["logger"].startswith(("httpx", "httpcore"))]
    assert len(second_run) < 10, second_run


@pytest.mark.slow
def test_up_without_a_version_starts_nothing_and_down_finishes(workspace: Workspace) -> None:
    result = workspace.zd("up", check=False)
    assert result.returncode == 2 and "pass --version" in result.stderr
    state = workspace.root / ".zerodown"
    assert not (state / "controller.json").exists() and not (state / "router.pid").exists()
    assert workspace.zd("down", timeout=30).stdout == "nothing is running\n"


@pytest.mark.slow
def test_down_finishes_when_the_router_is_dead_and_cannot_come_back(workspace: Workspace) -> None:
    workspace.zd("up", "--version", "v1")
    instances = [int(i["handle"].split(":")[0]) for i in workspace.status()["instances"]]
    controller = workspace.controller_pid()
    router = int((workspace.root / ".zerodown" / "router.pid").read_text())
    os.kill(controller, signal.SIGSTOP)  # so that it cannot restart the router before we look
    try:
        os.kill(router, signal.SIGKILL)
        # The controller keeps the router's listening socket (a squatter cannot take the port),
        # so what keeps a new router from coming back is a state file it cannot read.
        paths = Paths.for_spec(workspace.spec_file)
        paths.router_state.write_text("{not a route table")
    finally:
        os.kill(controller, signal.SIGCONT)
    workspace.wait_for(
        lambda: workspace.status()["controller"]["last_error"], what="the failed restart"
    )
    workspace.zd("down", timeout=60)
    assert proc_start_ticks(controller) is None
    assert all(proc_start_ticks(pid) is None for pid in instances)


@pytest.mark.slow
def test_a_failing_pass_is_recorded_and_retried_while_traffic_flows(
    workspace: Workspace, decision_log: Any
) -> None:
    workspace.zd("up", "--version", "v1")
    admin = Paths.for_spec(workspace.spec_file).router_socket
    hidden = admin.with_name(admin.name + ".hidden")
    with workspace.load(rate=100) as load:
        admin.rename(hidden)  # the router runs, but its admin socket cannot be reached
        error = workspace.wait_for(
            lambda: workspace.status()["controller"]["last_error"], what="the failed pass"
        )
        assert "cannot be reached on its admin socket" in error["message"]
        time.sleep(1)  # a few more failed passes: still one entry in the decision log
        hidden.rename(admin)
        workspace.wait_for(
            lambda: (workspace.status()["controller"]["last_pass"] or 0) > error["at"],
            what="passes to complete again",
        )
        workspace.zd("deploy", "v2", "--wait")  # and the engine still deploys
    assert [(s.status, s.error) for s in load.report.failed] == []
    kinds = [e["kind"] for e in decision_log()]
    assert kinds.count("error") == 1 and "recovered" in kinds
    routers = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_router(p, str(admin))
    ]
    assert len(routers) == 1  # the unreachable router was reported, never doubled


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        pass
    return False


def _bound(port: int) -> socket.socket | None:
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError:
        return None


def _runs_router(proc: Path, admin: str) -> bool:
    """A router serving on this admin socket (the driver's standby, waiting, is not one)."""
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return admin.encode() in argv and b"--standby" not in argv
