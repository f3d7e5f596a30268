"""The controller's HTTP API, as the CLI, the demo and the benches call it.

A controller announces itself in .zerodown/controller.json (pid and URL); it is reached only
while that pid lives. Every call carries the bearer token of .zerodown/token. A controller that
does not answer is NotRunning (with where its log is); one that refuses says why in ApiError,
in its own words (FastAPI's validation errors name each field).
"""

from __future__ import annotations

import json
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


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
