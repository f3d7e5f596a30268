"""The router's admin API: a small HTTP/1.1 server on a unix socket (and optionally TCP).

GET  /healthz                  {"ok": true, "generation": g}
GET  /routes                   the current RouteTable as JSON
PUT  /routes                   replace the table (validated, persisted, then swapped)
GET  /stats                    per-release counters and per-backend in-flight/requests
GET  /samples?release=R&since=T   recent [ts, latency, status] of release R after T
GET  /metrics                  Prometheus text exposition
POST /tunnels/close?backend=A  close the upgraded connections (WebSockets) open on backend A
POST /hold?max=S               queue new requests, at most S seconds (hold.py)
POST /release                  route the held requests, in order

On the unix socket, file permissions (0600) are the access control. On TCP, reads are open
(for Prometheus) and anything that changes state needs `Authorization: Bearer <token>`.

With `router.workers` the first worker alone serves the TCP API, and knows the other workers'
admin sockets (`siblings`): its /stats, /metrics and /samples over TCP are every worker's,
merged (503 while one cannot answer: a partial sum would make counters go down), and changes
over TCP are refused (the controller applies them to every worker).

This module knows the router only through `RouterControl` (server.Router satisfies it), so it never
imports server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httptools

from zerodown import __version__
from zerodown.routers.proxy.events import log
from zerodown.routers.proxy.statefile import save_state
from zerodown.routers.proxy.stats import ReleaseCounters, merge_stats_json, prometheus_text
from zerodown.routers.proxy.validate import TableError, parse_table

if TYPE_CHECKING:
    from zerodown.core.routes import RouteTable
    from zerodown.routers.proxy.routing import CompiledTable

MAX_BODY = 16 * 1024 * 1024
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HOLD = 3600.0  # seconds: the longest hold a request may ask for

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    503: "Service Unavailable",
    413: "Content Too Large",
    500: "Internal Server Error",
}


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.method = ""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.keep_alive = True


class _Collector:
    """httptools callbacks that collect whole requests (admin bodies are small)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[_Request] = deque()
        self.cur = _Request()
        self.size = 0

    def on_message_begin(self) -> None:
        self.cur = _Request()
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.cur.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.cur.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.cur.method = self.parser.get_method().decode()
        self.cur.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            raise ValueError("request body too large")
        self.cur.body.append(body)

    def on_message_complete(self) -> None:
        self.ready.append(self.cur)


Reply = tuple[int, str, bytes]


def _json(status: int, data: Any) -> Reply:
    return status, "application/json", json.dumps(data).encode()


def _error(status: int, message: str) -> Reply:
    return _json(status, {"error": message})


def _get(target: str) -> _Request:
    req = _Request()
    req.method, req.url = "GET", target.encode("latin-1")
    return req


SIBLING_TIMEOUT = 5.0  # seconds another worker has to answer


async def _fetch(admin_socket: Path, target: str) -> Any:
    """GET `target` on another worker's admin socket: its JSON answer."""

    async def get() -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(admin_socket))
        try:
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n".encode()
            )
            return await reader.read()  # until it closes: Connection: close
        finally:
            writer.close()

    async with asyncio.timeout(SIBLING_TIMEOUT):
        raw = await get()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        status_line = head.partition(b"\r\n")[0].decode("latin-1")
        raise ValueError(f"{admin_socket}: {status_line}")
    return json.loads(body)


class RouterControl(Protocol):
    """What the admin API reads and changes of the router (server.Router)."""

    @property
    def table(self) -> CompiledTable[Any]: ...
    @property
    def releases(self) -> Mapping[str, ReleaseCounters]: ...
    def install(self, table: RouteTable) -> None: ...
    def stats_json(self) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    def close_tunnels(self, address: str | None = None) -> int: ...
    @property
    def handed_over(self) -> bool: ...
    @property
    def holding(self) -> bool: ...
    def hold_traffic(self, seconds: float) -> dict[str, Any]: ...
    def release_traffic(self) -> dict[str, Any]: ...


class Admin:
    def __init__(
        self,
        router: RouterControl,
        state_file: Path,
        token: str | None,
        siblings: tuple[Path, ...] = (),
    ) -> None:
        self.router = router
        self.state_file = state_file
        self.token = token
        self.siblings = siblings  # the other workers' admin sockets (router.workers)
        self.lock = asyncio.Lock()

    async def handle_unix(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, tcp=False)

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, tcp=True)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tcp: bool
    ) -> None:
        collector = _Collector()
        try:
            while True:
                while not collector.ready:
                    data = await reader.read(65536)
                    if not data:
                        return
                    try:
                        collector.parser.feed_data(data)
                    except (httptools.HttpParserError, ValueError) as e:
                        status = 413 if isinstance(e, ValueError) else 400
                        self._write(writer, _error(status, str(e)), close=True)
                        await writer.drain()
                        return
                req = collector.ready.popleft()
                reply = await self.dispatch(req, tcp=tcp)
                # After a handover the client must reconnect: to the router that took over.
                close = not req.keep_alive or self.router.handed_over
                self._write(writer, reply, close=close)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, reply: Reply, *, close: bool) -> None:
        status, ctype, body = reply
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        writer.write(head.encode() + body)

    def _authorized(self, req: _Request) -> bool:
        if self.token is None:
            return False
        given = req.headers.get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + self.token.encode())

    async def dispatch(self, req: _Request, *, tcp: bool) -> Reply:
        parts = urlsplit(req.url.decode("latin-1"))
        path = parts.path
        router = self.router
        if req.method != "GET" and router.handed_over:
            return _error(503, "this router handed its sockets to a successor: send it again")
        if req.method != "GET":
            if tcp and not self._authorized(req):
                return _error(
                    401, "changing the router over TCP needs 'Authorization: Bearer <token>'"
                )
            if tcp and self.siblings:
                return _error(
                    409,
                    "this router runs several workers: change them through the controller"
                    " (zerodown), which changes every worker",
                )
            if path == "/routes" and req.method == "PUT":
                return await self.put_routes(b"".join(req.body))
            if path == "/tunnels/close" and req.method == "POST":
                backend = parse_qs(parts.query).get("backend", [""])[0]
                if not backend:
                    return _error(400, "/tunnels/close needs ?backend=HOST:PORT")
                closed = router.close_tunnels(backend)
                log("router.tunnels_closed", backend=backend, closed=closed)
                return _json(200, {"closed": closed})
            if path == "/hold" and req.method == "POST":
                try:
                    seconds = float(parse_qs(parts.query).get("max", ["30"])[0])
                except ValueError:
                    seconds = -1.0
                if not 0 < seconds <= MAX_HOLD:  # also refuses nan
                    return _error(
                        400,
                        f"/hold?max=SECONDS: a number of seconds, more than 0, at most {MAX_HOLD:g}",
                    )
                return _json(200, router.hold_traffic(seconds))
            if path == "/release" and req.method == "POST":
                return _json(200, router.release_traffic())
            if path in ("/routes", "/healthz", "/stats", "/samples", "/metrics"):
                return _error(405, f"{req.method} is not allowed on {path}")
            return _error(404, f"no such endpoint: {path}")
        if tcp and self.siblings and path in ("/stats", "/metrics", "/samples"):
            return await self.merged(path, parts.query)
        if path == "/healthz":
            return _json(
                200,
                {
                    "ok": True,
                    "generation": router.table.generation,
                    "pid": os.getpid(),
                    "version": __version__,
                    "handed_over": router.handed_over,
                    "hold": {"holding": router.holding},
                },
            )
        if path == "/routes":
            return _json(200, router.table.table.to_json())
        if path == "/stats":
            return _json(200, router.stats_json())
        if path == "/metrics":
            return 200, METRICS_TYPE, router.metrics_text().encode()
        if path == "/samples":
            query = parse_qs(parts.query)
            release = query.get("release", [""])[0]
            if not release:
                return _error(400, "/samples needs ?release=NAME (and optionally &since=UNIX_TS)")
            try:
                since = float(query.get("since", ["0"])[0])
            except ValueError:
                return _error(400, "since: expected a UNIX timestamp in seconds, e.g. 1700000000.5")
            counters = router.releases.get(release)
            return _json(200, counters.samples_since(since) if counters else [])
        return _error(404, f"no such endpoint: {path}")

    async def merged(self, path: str, query: str) -> Reply:
        """GET `path` of every worker, as one answer (/metrics: from their /stats)."""
        target = "/stats" if path == "/metrics" else f"{path}?{query}" if query else path
        # This worker's own answer, as it gives it on its unix socket.
        own_status, _ctype, own_body = await self.dispatch(_get(target), tcp=False)
        if own_status != 200:
            return own_status, _ctype, own_body
        try:
            others = await asyncio.gather(*(_fetch(s, target) for s in self.siblings))
        except (OSError, ValueError, TimeoutError) as e:
            return _error(503, f"a router worker cannot be reached ({e}); ask again")
        parts = [json.loads(own_body), *others]
        if path == "/samples":
            return _json(200, sorted((s for p in parts for s in p), key=lambda s: s[0]))
        stats = merge_stats_json(parts)
        if path == "/stats":
            return _json(200, stats)
        releases = {n: ReleaseCounters.from_json(c) for n, c in stats["releases"].items()}
        backends = [(b["release"], a, b["inflight"]) for a, b in stats["backends"].items()]
        return 200, METRICS_TYPE, prometheus_text(releases, backends).encode()

    async def put_routes(self, body: bytes) -> Reply:
        try:
            table = parse_table(body)
        except TableError as e:
            return _error(400, f"invalid route table: {e}")
        async with self.lock:
            if self.router.handed_over:  # waited for the lock while a successor took over
                return _error(503, "this router handed its sockets to a successor: send it again")
            current = self.router.table.generation
            if table.generation < current:
                return _error(
                    409,
                    f"generation {table.generation} is older than the router's current "
                    f"generation {current}; send a table with generation >= {current}",
                )
            try:
                await asyncio.to_thread(save_state, self.state_file, table)
            except OSError as e:
                return _error(500, f"cannot write the state file {self.state_file}: {e}")
            self.router.install(table)
        log(
            "router.table_applied",
            generation=table.generation,
            pools={p.release: [p.weight, len(p.backends)] for p in table.pools},
        )
        return _json(200, {"generation": table.generation})
