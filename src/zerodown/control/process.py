"""Starting and stopping a controller process.

One controller per spec directory: a controller is started only when none is alive (its pid in
.zerodown/controller.json), and one started by `start_controller` that does not come up is
stopped again, so a failed start leaves no process behind. The controller's stderr goes to
.zerodown/logs/controller.stderr, rewritten at each start, so the caller can say why it stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from zerodown.control.client import Client, NotRunning, controller_pid, controller_url, pid_alive
from zerodown.core.errors import ZerodownError
from zerodown.paths import Paths


def controller_argv(paths: Paths, *, log_format: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "zerodown.api", "-f", str(paths.spec)]
    if log_format is not None:  # the controller's default is text
        argv += ["--log-format", log_format]
    return argv


def start_controller(paths: Paths, timeout: float = 20.0, *, log_format: str | None = None) -> int:
    """Start the controller in its own session; return its pid once its API answers.

    A controller that exits or does not answer in time is stopped, and NotRunning says why
    (the first lines of its error output)."""
    paths.ensure()
    router_before = _router_pids(paths)
    with (
        open(paths.logs / "controller.log", "ab") as out,
        open(paths.controller_errors, "wb") as errors,
    ):
        child = subprocess.Popen(
            controller_argv(paths, log_format=log_format),
            stdout=out,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=paths.spec_dir,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if controller_pid(paths) == child.pid and controller_url(paths):
            with contextlib.suppress(NotRunning), Client(paths) as client:
                client.get("/api/status")
                return child.pid
        if child.poll() is not None:
            _stop_new_router(paths, router_before)
            raise NotRunning(f"the controller did not start: {why_it_stopped(paths)}")
        time.sleep(0.05)
    _stop_group(child)
    _stop_new_router(paths, router_before)
    raise NotRunning(
        f"the controller did not answer within {timeout:g}s and was stopped: "
        f"{why_it_stopped(paths)}"
    )


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _router_pids(paths: Paths) -> set[int]:
    """The router's running processes: the first worker and any others (`router.workers`)."""
    files = [paths.router_pid, *paths.router_worker_pids()]
    return {pid for pid in (router_pid(paths, f) for f in files) if pid is not None}


def _stop_new_router(paths: Paths, before: set[int]) -> None:
    """A router that a failed controller started (in its own session) goes with it."""
    new = _router_pids(paths) - before
    for pid in new:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while left := [pid for pid in new if pid_alive(pid)]:
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


ERROR_LINES = 6


def why_it_stopped(paths: Paths) -> str:
    """What the controller said on stderr, shortened to what matters, and where the rest is."""
    try:
        text = paths.controller_errors.read_text(errors="replace")
    except OSError:
        text = ""
    summary = error_summary(text)
    where = f"(see {paths.controller_errors} and {paths.logs / 'controller.log'})"
    return f"{summary}\n{where}" if summary else f"it wrote no error {where}"


def error_summary(text: str, lines: int = ERROR_LINES) -> str:
    """The lines of a process's error output that say why it stopped: its own `error:` message
    and what follows it, or the exception that ends a traceback, or else its first lines."""
    rows = [row.rstrip() for row in text.splitlines() if row.strip()]
    for n, row in enumerate(rows):
        if row.startswith("error:"):  # the caller says "error:" already
            return "\n".join([row.removeprefix("error:").strip(), *rows[n + 1 : n + lines]])
    if any(row.startswith("Traceback") for row in rows):
        return next(row for row in reversed(rows) if not row.startswith((" ", "\t")))
    return "\n".join(rows[:lines])


def router_pid(paths: Paths, pid_file: Path | None = None) -> int | None:
    """The router's pid while it runs (it outlives a controller that dies); `pid_file`: one
    of its other workers' (`router.workers`)."""
    try:
        pid = int((pid_file or paths.router_pid).read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def shut_down(paths: Paths, *, who: str, timeout: float = 120.0) -> None:
    """`zerodown down`: ask the controller to stop everything, and wait until it has exited,
    and with it the standby controllers of this machine (on a store shared by several, each
    standby takes the lease once the leader is gone, finds `down` under way, finishes it and
    exits too): `down` returns when nothing of the service runs here.

    Bounded: after `timeout` it raises NotRunning saying what is still running and what to do."""
    pid = controller_pid(paths)
    with Client(paths) as client:
        standbys = _local_standbys(client)
        try:
            client.post("/api/down", {"who": who})
        except NotRunning:
            if pid is None or not pid_alive(pid):
                pid = None  # it stopped meanwhile
            # else its API has closed: it is already stopping (an earlier `down`); wait for it
        deadline = time.monotonic() + timeout
        for waited in ([pid] if pid is not None else []) + standbys:
            while pid_alive(waited):
                if time.monotonic() > deadline:
                    raise NotRunning(_still_stopping(client, waited, timeout))
                time.sleep(0.1)


def _local_standbys(client: Client) -> list[int]:
    """The pids of the standby controllers on this machine that the leader has seen lately."""
    try:  # briefly: a controller too busy to answer this would not answer `down` either
        response = client.http.get("/api/status", headers=client.headers, timeout=5.0)
        leadership = response.json().get("leadership") or {}
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    here = socket.gethostname()
    pids = []
    for standby in leadership.get("standbys", []):
        host, _, pid = str(standby.get("id", "")).rpartition(":")
        if host == here and pid.isdigit():
            pids.append(int(pid))
    return pids


def _still_stopping(client: Client, pid: int, timeout: float) -> str:
    try:
        left = [i["id"] for i in client.get("/api/status")["instances"]]
    except ZerodownError:
        left = []
    waiting = f" ({len(left)} instance(s) left: {', '.join(left[:5])})" if left else ""
    return (
        f"the controller (pid {pid}) is still stopping after {timeout:g}s{waiting}. "
        f"`zerodown status` shows what it waits for; `zerodown down` waits again; "
        f"`kill {pid}` stops the controller alone (the router and instances keep running)"
    )
