"""The CLI's side of the controller API, and starting the controller in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from zerodown.core.errors import ZerodownError
from zerodown.paths import Paths


class NotRunning(ZerodownError):
    pass


class ApiError(ZerodownError):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


def controller_url(paths: Paths) -> str | None:
    try:
        info = json.loads(paths.controller_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])


def controller_pid(paths: Paths) -> int | None:
    try:
        return int(json.loads(paths.controller_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


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

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        try:
            return self._check(self.http.get(path, params=params))
        except httpx.TransportError as exc:
            raise NotRunning(f"the controller does not answer ({exc}); try `zerodown up`") from exc

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return self._check(self.http.post(path, json=body or {}, headers=self.headers))
        except httpx.TransportError as exc:
            raise NotRunning(f"the controller does not answer ({exc}); try `zerodown up`") from exc


def start_controller(paths: Paths, timeout: float = 20.0) -> None:
    """Start the controller in its own session; return once its API answers."""
    paths.ensure()
    with open(paths.logs / "controller.log", "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "zerodown.api", "-f", str(paths.spec)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=paths.spec_dir,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if controller_pid(paths) == child.pid and controller_url(paths):
            with Client(paths) as client:
                try:
                    client.get("/api/status")
                    return
                except NotRunning:
                    pass
        if child.poll() is not None:
            break
        time.sleep(0.05)
    tail = (paths.logs / "controller.log").read_text(errors="replace").strip().splitlines()[-5:]
    raise NotRunning("the controller did not start:\n  " + "\n  ".join(tail))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def shut_down(paths: Paths, *, who: str, timeout: float = 120.0) -> None:
    """`zerodown down`: ask the controller to stop everything, and wait until it has exited."""
    pid = controller_pid(paths)
    with Client(paths) as client:
        client.post("/api/down", {"who": who})
    deadline = time.monotonic() + timeout
    while pid is not None and pid_alive(pid):
        if time.monotonic() > deadline:
            raise NotRunning(f"the controller (pid {pid}) is still stopping after {timeout:g}s")
        time.sleep(0.1)
