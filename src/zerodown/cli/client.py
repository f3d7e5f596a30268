"""The CLI's side of the controller API, and starting and stopping the controller.

One controller per spec directory: a controller is started only when none is alive (its pid in
.zerodown/controller.json), and one started by `start_controller` that does not come up is
stopped again, so a failed start leaves no process behind. The controller's stderr goes to
.zerodown/logs/controller.stderr, rewritten at each start, so the CLI can say why it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import httpx

from zerodown.core.errors import ZerodownError
from zerodown.core.model import Instance, ServiceStatus
from zerodown.paths import Paths
from zerodown.store.sqlite import SqliteStore


class NotRunning(ZerodownError):
    pass


class ApiError(ZerodownError):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


def controller_url(paths: Paths) -> str | None:
    """The URL of the controller's API while its process lives (not a zombie: in a container
    without an init that reaps, a controller killed by -9 stays one)."""
    try:
        info = json.loads(paths.controller_file.read_text())
        pid, url = int(info["pid"]), str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if pid_alive(pid) else None


def controller_pid(paths: Paths) -> int | None:
    try:
        return int(json.loads(paths.controller_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text
    if isinstance(detail, list):  # FastAPI's validation errors: name each field
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}"
            for e in detail
            if isinstance(e, dict)
        )
    return str(detail)


class Client:
    def __init__(self, paths: Paths) -> None:
        url = controller_url(paths)
        if url is None:
            raise NotRunning(
                f"zerodown is not running for {paths.spec}; start it with `zerodown up`"
            )
        self.paths = paths
        self.http = httpx.Client(base_url=url, timeout=30.0)
        self.headers = {"Authorization": f"Bearer {paths.token()}"}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _silent(self, exc: Exception) -> NotRunning:
        log = self.paths.logs / "controller.log"
        return NotRunning(f"the controller does not answer ({exc}); its log: {log}")

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "the controller's answer is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        try:
            return self._check(self.http.get(path, params=params, headers=self.headers))
        except httpx.TransportError as exc:
            raise self._silent(exc) from exc

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return self._check(self.http.post(path, json=body or {}, headers=self.headers))
        except httpx.TransportError as exc:
            raise self._silent(exc) from exc


def has_release(paths: Paths, service: str) -> bool:
    """Whether the store of a stopped service holds something to start without --version (a
    stable release or a rollout under way). Read before a controller is started, so `up` on a
    new service without a version starts nothing."""
    try:
        stored = _stored(paths, service)
    except sqlite3.Error:
        return True  # let the controller read it and report what is wrong
    if stored is None:
        return False
    status, _ = stored
    return status.stable is not None or (status.rollout is not None and status.rollout.active)


def left_running(paths: Paths, service: str | None) -> list[str]:
    """What still runs for a service whose controller is gone: its router and instances."""
    router = router_pid(paths)
    left = [f"router (pid {router})"] if router is not None else []
    try:
        stored = _stored(paths, service) if service is not None else None
    except sqlite3.Error:
        stored = None
    if stored is not None:
        # A handle is the platform's to read: whether each instance still runs is for the
        # controller to find out (it adopts it or forgets it, then stops what runs).
        left += [i.id for i in stored[1] if i.handle is not None and i.phase.value != "stopped"]
    return left


def _stored(paths: Paths, service: str) -> tuple[ServiceStatus, list[Instance]] | None:
    if not paths.store.exists():
        return None
    store = SqliteStore(paths.store)
    try:
        return store.status(service), store.instances(service)
    finally:
        store.close()


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
    router_before = router_pid(paths)
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


def _stop_new_router(paths: Paths, before: int | None) -> None:
    """A router that a failed controller started (in its own session) goes with it."""
    pid = router_pid(paths)
    if pid is None or pid == before:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        if time.monotonic() > deadline:
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


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def router_pid(paths: Paths) -> int | None:
    """The router's pid while it runs (it outlives a controller that dies)."""
    try:
        pid = int(paths.router_pid.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def shut_down(paths: Paths, *, who: str, timeout: float = 120.0) -> None:
    """`zerodown down`: ask the controller to stop everything, and wait until it has exited.

    Bounded: after `timeout` it raises NotRunning saying what is still running and what to do."""
    pid = controller_pid(paths)
    with Client(paths) as client:
        try:
            client.post("/api/down", {"who": who})
        except NotRunning:
            if pid is None or not pid_alive(pid):
                return  # it stopped meanwhile
            # its API has closed: it is already stopping (an earlier `down`); wait for it
        deadline = time.monotonic() + timeout
        while pid is not None and pid_alive(pid):
            if time.monotonic() > deadline:
                raise NotRunning(_still_stopping(client, pid, timeout))
            time.sleep(0.1)


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
