"""A container engine's HTTP API (Docker Engine API v1.41, which Docker and Podman's compatible
service both speak) on its unix socket, with httpx.

Only what the container platform needs: the socket found the way the docker CLI finds it
(DOCKER_HOST, then the Docker socket, then Podman's), requests whose failures are DriverErrors
that say what to do, and the engine's multiplexed output streams (logs, exec) read back as text.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from zerodown.core.errors import PermanentDriverError, TransientDriverError

API_VERSION = "v1.41"  # Docker 20.10+, Podman 3+ (compat API); newer engines still speak it
DOCKER_SOCKET = Path("/var/run/docker.sock")
PODMAN_SOCKET = Path("/run/podman/podman.sock")
START_ONE = (
    "start one: `podman system service --time 0 unix:///run/podman/podman.sock &` (or "
    "`systemctl start podman.socket`, or Docker), or set DOCKER_HOST=unix:///path/to/engine.sock"
)
CALL_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
FRAME_HEADER = struct.Struct(">BxxxL")  # stream (1 stdout, 2 stderr), 3 padding bytes, size


class EngineUnreachable(TransientDriverError):
    """No engine answers on the socket (or there is no socket): the message says where zerodown
    looked and what to run. Transient while instances run (the engine may be restarting);
    `prepare` makes it permanent, so that a deploy fails with it instead of waiting."""


class EngineError(PermanentDriverError):
    """The engine refused a request; `status` is its HTTP status, the message its words."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def candidate_sockets(env: Mapping[str, str]) -> list[Path]:
    runtime = env.get("XDG_RUNTIME_DIR")
    rootless = [Path(runtime) / "podman" / "podman.sock"] if runtime else []
    return [DOCKER_SOCKET, PODMAN_SOCKET, *rootless]


def find_socket(env: Mapping[str, str] | None = None) -> Path:
    """The engine's socket, or EngineUnreachable naming every place looked at."""
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "")
    if host:
        if not host.startswith("unix://"):
            raise PermanentDriverError(
                f"DOCKER_HOST={host}: zerodown talks to the container engine on its unix socket "
                "only; set DOCKER_HOST=unix:///path/to/engine.sock (on the engine's machine)"
            )
        path = Path(host.removeprefix("unix://"))
        if not path.is_socket():
            raise EngineUnreachable(
                f"no container engine socket at {path} (DOCKER_HOST={host}); {START_ONE}"
            )
        return path
    candidates = candidate_sockets(env)
    for path in candidates:
        if path.is_socket():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise EngineUnreachable(
        f"no container engine socket: looked at DOCKER_HOST (unset), {looked}; {START_ONE}"
    )


class Engine:
    """One connection pool to the engine, made on first use (so that a missing socket is an
    error of the call that needed it, with its reason, not of the controller's start)."""

    def __init__(self, socket: Path | None = None) -> None:
        self._socket = socket
        self._client: httpx.AsyncClient | None = None

    @property
    def socket(self) -> Path:
        if self._socket is None:
            self._socket = find_socket()
        return self._socket

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                # A connection per call (a unix socket connects in microseconds): none is left
                # open for an event loop that ends (the tests run one loop per scenario).
                transport=httpx.AsyncHTTPTransport(
                    uds=str(self.socket), limits=httpx.Limits(max_keepalive_connections=0)
                ),
                base_url=f"http://engine/{API_VERSION}",
                timeout=CALL_TIMEOUT,
            )
        return self._client

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """The engine's answer, whole; EngineError when its status is not in `ok`."""
        try:
            response = await self._http().request(
                method,
                path,
                params=params,
                json=body,
                timeout=timeout if timeout is not None else CALL_TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if response.status_code not in ok:
            raise EngineError(
                f"{method} {path}: {reason_of(response)}", status=response.status_code
            )
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        return response.json() if response.content else None

    def unreachable(self, exc: Exception) -> EngineUnreachable:
        what = type(exc).__name__ if not str(exc) else str(exc)
        return EngineUnreachable(
            f"the container engine at {self._socket or '?'} does not answer ({what}); "
            f"is it running? {START_ONE}"
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def reason_of(response: httpx.Response) -> str:
    """The engine's own words for a refusal ({"message": …}), else the body's start."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return " ".join(doc["message"].split())
    text = response.text.strip()[:300]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def stream_errors(body: str) -> list[str]:
    """The errors in a progress stream (a pull answers 200, then may say {"error": …})."""
    errors = []
    for line in body.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("error"):
            errors.append(" ".join(str(doc["error"]).split()))
    return errors


def demultiplex(raw: bytes) -> str:
    """An engine's output stream without its frame headers (stdout and stderr interleaved), or
    the bytes as they are when they are not framed (a container with a TTY)."""
    out, at = bytearray(), 0
    while at + FRAME_HEADER.size <= len(raw):
        stream, size = FRAME_HEADER.unpack_from(raw, at)
        if stream not in (0, 1, 2):
            return raw.decode(errors="replace")
        out += raw[at + FRAME_HEADER.size : at + FRAME_HEADER.size + size]
        at += FRAME_HEADER.size + size
    if at != len(raw):
        return raw.decode(errors="replace")
    return out.decode(errors="replace")
