"""Every command's human output, against a real controller, router and sample app (issue 10,
sections 4 and 6): what a new user sees, and the exit codes a script relies on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_kit import processes_of

from support.workspace import Workspace

pytestmark = pytest.mark.slow


def words(text: str) -> str:
    """Output with rich's wrapping undone, to match sentences."""
    return " ".join(text.split())


def rollout(ws: Workspace) -> dict[str, Any]:
    return dict(ws.status()["status"]["rollout"] or {})


def test_rolling_lifecycle(workspace: Workspace) -> None:
    ws = workspace
    up = ws.zd("up", "--version", "v1")
    assert f"serving on http://127.0.0.1:{ws.port} (GET / → 200)" in up.stdout

    status = ws.zd("status").stdout
    assert "stable     v1" in status and "traffic    v1 100%" in status
    assert "revision 1: - → v1 (rolling) completed" in status and "v1: 2 ready" in status

    bad = ws.zd("deploy", "x/y", check=False)
    assert bad.returncode == 2 and "version 'x/y' is not valid" in bad.stderr
    assert [r["version"] for r in json.loads(ws.zd("history", "--json").stdout)] == ["v1"]

    deploy = ws.zd("deploy", "v2", "--wait", "--timeout", "1m")
    assert "started revision 2: v2" in deploy.stdout
    assert "complete  rollout of v2 complete" in deploy.stdout
    again = ws.zd("deploy", "v2")
    assert again.stdout == "v2 is already serving; nothing to do\n"

    history = ws.zd("history").stdout
    assert "│ 1   │ v1      │ rolling  │" in history and "│ 2   │ v2      │ rolling  │" in history

    back = ws.zd("rollback", "--wait", "--timeout", "90s")
    assert "rolling back: revision 3" in back.stdout
    assert ws.status()["status"]["stable"] == "v1"

    for command, says in [
        ("promote", "no rollout is in progress; nothing to promote"),
        ("abort", "no rollout is in progress; nothing to abort"),
        ("pause", "no rollout is in progress; nothing to pause"),
        ("resume", "no rollout is in progress; nothing to resume"),
        ("retry", "only an aborted or failed rollout can be retried"),
    ]:
        refused = ws.zd(command, check=False)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr

    assert ws.zd("down").stdout == "stopped\n"
    assert processes_of(ws.root) == []
    assert ws.zd("down").stdout == "nothing is running\n"
    assert ws.zd("status", check=False).returncode == 1


CANARY: dict[str, Any] = {
    "gate": {"command": ["true"]},
    "smoke": {"checks": [{"name": "home", "request": "GET /healthz", "expect": {"status": 200}}]},
    "analysis": {
        "templates": {
            "health": {
                "metrics": [
                    {
                        "name": "error-rate",
                        "query": "error_rate",
                        "interval": "300ms",
                        "count": 2,
                        "min_samples": 0,
                        "failure_condition": "result > 0.5",
                    }
                ]
            }
        }
    },
    "strategy": {
        "canary": {
            "steps": [
                {"set_weight": 50},
                {"analysis": {"templates": ["health"]}},
                {"pause": {}},
                {"set_weight": 100},
            ]
        }
    },
}


@pytest.fixture
def canary(tmp_path: Path) -> Any:
    ws = Workspace.create(tmp_path, **CANARY)
    yield ws
    ws.teardown()


def at_pause_step(ws: Workspace) -> bool:
    current = rollout(ws)
    return current["phase"] == "paused" and current["step"] == 2


def test_canary_with_checks_pause_resume_promote_abort_retry(canary: Workspace) -> None:
    ws = canary
    ws.zd("up", "--version", "v1")
    ws.zd("deploy", "v2")
    assert ws.zd("pause").stdout == "paused\n"
    assert rollout(ws)["phase"] == "paused"
    assert ws.zd("resume").stdout == "resumed\n"
    ws.wait_for(lambda: at_pause_step(ws), 60, "the canary to stop at its pause step")

    status = ws.zd("status").stdout  # crashed with TypeError whenever there were checks
    assert "revision 2: v1 → v2 (canary) paused" in status
    assert "paused     step 3/4: paused until `zerodown promote`" in status
    assert "✓  2.  analysis health" in status and "▶  3.  pause" in status
    for check in ("gate", "smoke:pre", "analysis:step-2"):
        assert any(check in row and "passed" in row for row in status.splitlines()), status

    assert ws.zd("promote").stdout == "promoted\n"
    ws.wait_for(lambda: ws.status()["status"]["stable"] == "v2", 60, "v2 to be promoted")
    history = ws.zd("history").stdout
    row = next(line for line in history.splitlines() if line.startswith("│ 2 "))
    assert "│ v2      │ canary   │" in row and "completed │ all 4 steps passed" in row, history

    ws.zd("deploy", "v3")
    ws.wait_for(lambda: at_pause_step(ws), 60, "v3 to stop at its pause step")
    assert ws.zd("abort").stdout == "aborted: traffic is on the stable release\n"
    up = ws.zd("up")  # exited 4 while v2 served
    assert up.returncode == 0
    assert "note: the last rollout (revision 3, v3) aborted: aborted by cli; v2 serves" in words(
        up.stderr
    )
    assert "serving on" in up.stdout
    assert ws.zd("retry").stdout == "retrying from the first step\n"
    retried = rollout(ws)
    assert retried["version"] == "v3" and retried["phase"] in ("progressing", "paused")
    # every check runs again: the step's analysis too, not the finished run of the last attempt
    ws.wait_for(lambda: at_pause_step(ws), 60, "the retried canary to pass its analysis step")
    assert rollout(ws)["checks"]["analysis:step-2"]["state"] == "passed"

    # --full goes past every remaining step at once: v4 never stops at its pause
    ws.zd("promote", "--full")
    ws.wait_for(lambda: ws.status()["status"]["stable"] == "v3", 60, "v3 to be promoted")
    ws.zd("deploy", "v4")
    assert rollout(ws)["version"] == "v4"
    assert ws.zd("promote", "--full").stdout == "promoted\n"
    assert rollout(ws)["step"] == 4, rollout(ws)
    ws.wait_for(lambda: ws.status()["status"]["stable"] == "v4", 60, "v4 to be promoted in full")
    row = next(line for line in ws.zd("history").stdout.splitlines() if line.startswith("│ 4 "))
    assert "│ v4      │ canary   │" in row and "completed" in row, row


def test_up_that_cannot_start_the_controller_says_why(workspace: Workspace) -> None:
    state = workspace.root / ".zerodown"
    (state / "state.db").mkdir(parents=True)  # the store cannot be opened
    result = workspace.zd("up", "--version", "v1", check=False)
    assert result.returncode == 1
    said = words(result.stderr)
    assert (
        "error: the controller did not start: the state store "
        f"{state / 'state.db'} is unavailable: unable to open database file"
    ) in said, said
    assert "controller.stderr" in said and "Traceback" not in result.stderr
    assert processes_of(workspace.root) == []


def test_down_is_bounded_and_says_what_is_left(workspace: Workspace) -> None:
    workspace.zd("up", "--version", "v1")
    pid = workspace.controller_pid()
    stuck = workspace.zd("down", "--timeout", "200ms", check=False)  # instances drain for 3s
    assert stuck.returncode == 1
    said = words(stuck.stderr)
    assert f"the controller (pid {pid}) is still stopping after 0.2s" in said, said
    assert f"`kill {pid}` stops the controller alone" in said
    again = workspace.zd("down")  # waits for the same shutdown, or finds it done
    assert again.stdout in ("stopped\n", "nothing is running\n")
    assert processes_of(workspace.root) == []


def test_down_after_the_controller_died_stops_the_router_and_instances(
    workspace: Workspace,
) -> None:
    workspace.zd("up", "--version", "v1")
    pid = workspace.controller_pid()
    os.kill(pid, signal.SIGKILL)
    workspace.wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, "pid gone")
    down = workspace.zd("down")
    said = words(down.stdout)
    assert "the controller is not running; starting it to stop router (pid" in said, said
    assert "shop-v1-" in said  # and the instances it left
    assert down.stdout.endswith("stopped\n")
    assert processes_of(workspace.root) == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_log_format_json_reaches_the_controller(workspace: Workspace) -> None:
    controller = subprocess.run(
        [sys.executable, "-m", "zerodown.api", "--help"], capture_output=True, text=True
    )
    if "--log-format" not in controller.stdout:
        pytest.skip("this controller has no --log-format yet (issue 10, section 5)")
    workspace.zd("up", "--version", "v1", "--log-format", "json")
    argv = Path(f"/proc/{workspace.controller_pid()}/cmdline").read_bytes().split(b"\0")
    assert argv[-3:] == [b"--log-format", b"json", b""]
