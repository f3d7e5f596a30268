"""The state store locked by another process in the middle of a rollout under load: traffic is
untouched, the engine records the error once, and the rollout completes once the lock is gone
(it used to stay "progressing" forever: the probe's report died with the failed write)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from support.workspace import Workspace

pytestmark = pytest.mark.slow

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_store_locked_mid_rollout_under_load(workspace: Workspace, decision_log: Any) -> None:
    workspace.zd("up", "--version", "v1")
    with workspace.load() as load:
        time.sleep(1)
        workspace.zd("deploy", "v-slow-start")  # its startup probe passes after 1.5 s
        workspace.wait_for(lambda: workspace.launched("v-slow-start"), what="the first launch")
        locker = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(workspace.root / ".zerodown" / "state.db"), "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        workspace.wait_for(
            lambda: workspace.status()["controller"]["last_error"],
            timeout=10,
            what="the engine to meet the lock",
        )
        assert locker.wait(timeout=30) == 0
        locker.stdout.close()
        workspace.wait_for(
            lambda: workspace.status()["status"]["stable"] == "v-slow-start",
            timeout=60,
            what="the rollout to complete after the lock",
        )
        done = time.time()
        time.sleep(1)
    assert [(s.status, s.error) for s in load.report.failed] == []
    assert set(load.report.versions(since=done)) == {"v-slow-start"}
    errors = [e for e in decision_log() if e["kind"] == "error"]
    assert errors and all("database is locked" in e["message"] for e in errors), errors
    assert len(errors) == 1  # written once, not once per pass
    assert any(e["kind"] == "recovered" for e in decision_log())
    status = workspace.status()
    assert status["status"]["rollout"]["phase"] == "completed"
    assert status["controller"]["stalled_since"] is None
    assert status["controller"]["last_pass"] > status["controller"]["last_error"]["at"]
