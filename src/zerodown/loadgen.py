"""A bounded load generator for loopback: steady requests per second over keep-alive
connections, counting every failure. Used by the tests, the benchmarks and `zerodown demo`.

A request fails when no response arrives (connection refused or reset, timeout) or the status is
5xx; any other status (200, 201, 404…) is an answer. GET by default; `method` and `body` send
something else (e.g. a POST of the same JSON body every time), built once before the loop. Responses are attributed to a version by their X-Version header (the sample app sets it).
It only talks to loopback addresses and stops by itself after `max_seconds`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Sample:
    at: float  # wall clock when the request was sent
    latency: float
    status: int  # 0 = no response
    version: str
    error: str = ""
    # The connection it went on: the client's local port, and when that connection was opened
    # (wall clock). Which server process held a failed request's connection is found from it.
    port: int = 0
    opened: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Report:
    samples: list[Sample] = field(default_factory=list)
    retried: int = 0  # requests sent again after a reused connection closed (browser_like)

    @property
    def total(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def versions(self, since: float = 0.0) -> Counter[str]:
        return Counter(s.version for s in self.samples if s.at >= since and not s.failed)

    def percentile(self, p: float) -> float:
        latencies = sorted(s.latency for s in self.samples if not s.failed)
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        return len(self.samples) / (self.samples[-1].at - self.samples[0].at or 1)

    def summary(self) -> str:
        return (
            f"{self.total} requests, {len(self.failed)} failed, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms"
        )


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the load generator only targets loopback, not {host}")


class NoResponse(ConnectionError):
    """The connection closed before any byte of the response (browser_like clients only)."""


class LoadGenerator:
    """Runs in its own thread with its own event loop; `start()`, then `stop()` for the report."""

    def __init__(
        self,
        url: str,
        *,
        rate: float = 300.0,
        connections: int = 16,
        max_seconds: float = 120.0,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes = b"",
        browser_like: bool = False,
    ) -> None:
        """`browser_like`: treat a keep-alive connection the server closed while idle as
        browsers, Go's net/http and urllib3 do: look before reusing it, and send an idempotent
        request once more on a new connection when a reused one closed before any byte of its
        response (RFC 9110 9.2.2); those retries are counted in `report.retried`. Off by
        default (the strictest client): a proxy that closes idle client connections at a reload
        (HAProxy 2.6, nginx) then fails the next request of each."""
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        _check_loopback(self.host)
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate = rate
        self.connections = connections
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.headers = headers or {}
        self.method = method.upper()
        if not self.method.isalpha():
            raise ValueError(f"not an HTTP method: {method!r}")
        self.body = body
        self.browser_like = browser_like
        self.report = Report()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)

    def start(self) -> LoadGenerator:
        self._thread.start()
        return self

    def stop(self) -> Report:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.report

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        started = time.monotonic()
        self._next = started
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        if self.body or self.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            extra += f"Content-Length: {len(self.body)}\r\n"
        # The whole request is built once: the hot loop only writes these bytes.
        self._request = (
            f"{self.method} {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n"
        ).encode() + self.body
        workers = [asyncio.create_task(self._worker(started)) for _ in range(self.connections)]
        await asyncio.gather(*workers)

    def _running(self, started: float) -> bool:
        return not self._stop.is_set() and time.monotonic() - started < self.max_seconds

    async def _worker(self, started: float) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        port, opened = 0, 0.0  # conn's local port and when it was opened
        interval = 1.0 / self.rate
        while self._running(started):
            slot, self._next = self._next, max(self._next, time.monotonic() - 1) + interval
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._running(started):
                break
            sent_at, t0 = time.time(), time.monotonic()
            for attempt in (1, 2):
                reused = False
                try:
                    if conn is not None and self.browser_like and conn[0].at_eof():
                        conn[1].close()
                        conn = None
                    if conn is None:
                        port, opened = 0, time.time()
                        async with asyncio.timeout(self.timeout):
                            conn = await asyncio.open_connection(self.host, self.port)
                        port = conn[1].get_extra_info("sockname")[1]
                    else:
                        reused = True
                    async with asyncio.timeout(self.timeout):
                        status, version, keep = await self._exchange(*conn)
                    self.report.samples.append(
                        Sample(sent_at, time.monotonic() - t0, status, version, "", port, opened)
                    )
                    if not keep:
                        conn[1].close()
                        conn = None
                    break
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    if attempt == 1 and reused and self._may_retry(exc):
                        self.report.retried += 1
                        continue
                    error = f"{type(exc).__name__}: {exc}"
                    self.report.samples.append(
                        Sample(sent_at, time.monotonic() - t0, 0, "", error, port, opened)
                    )
                    break
        if conn is not None:
            conn[1].close()
            await asyncio.sleep(0)

    def _may_retry(self, exc: BaseException) -> bool:
        """An idempotent request whose reused connection closed before any response byte."""
        return isinstance(exc, NoResponse) and self.method in (
            "GET",
            "HEAD",
            "OPTIONS",
            "PUT",
            "DELETE",
        )

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, str, bool]:
        try:
            writer.write(self._request)
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            nothing = not isinstance(exc, asyncio.IncompleteReadError) or exc.partial == b""
            if self.browser_like and nothing:
                raise NoResponse(f"closed before any byte of the response ({exc})") from None
            raise
        head = raw.decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if self.method == "HEAD" or status in (204, 304):
            pass  # no body follows, whatever Content-Length says
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(int(headers.get("content-length", "0")))
        keep = headers.get("connection", "").lower() != "close"
        return status, headers.get("x-version", ""), keep
