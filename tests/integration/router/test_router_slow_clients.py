"""Slow clients against the real router: the header timeout and the per-address cap.

A client still sending its request headers after `--header-timeout` gets 408 and is closed (one
that sent nothing is closed); idle keep-alive connections are not affected. Per client address
at most `--slow-clients-per-address` connections may sit part-way through their headers: the
next one gets 429, while other addresses and fast requests go on.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from recording_backend import RecordingBackend
from router_kit import ResponseReader, RouterProc, start_router, wait_for

from zerodown.core.routes import Backend, Pool, RouteTable

pytestmark = pytest.mark.slow

PARTIAL = b"GET /slow-head HTTP/1.1\r\nHost: h\r\nX-Part: 1\r\n"


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    b = RecordingBackend()
    yield b
    b.close()


def start(tmp: Path, backend: RecordingBackend, **kw: object) -> RouterProc:
    r = start_router(tmp, **kw)  # type: ignore[arg-type]
    r.apply(RouteTable(1, (Pool("rec", 100, (Backend(backend.address, "rec"),)),)))
    return r


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def request(s: socket.socket, target: str) -> int:
    s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target.encode())
    return ResponseReader(s).read().status


def sending_headers(router: RouterProc) -> int:
    return int(router.stats()["clients"]["sending_headers"])


def test_header_timeout_cuts_clients_still_sending_headers(
    tmp_path: Path, backend: RecordingBackend
) -> None:
    router = start(tmp_path, backend, header_timeout=1.0)
    try:
        with contextlib.ExitStack() as stack:
            idle = stack.enter_context(connect(router.port))
            assert request(idle, "/before") == 200  # then idle on a keep-alive connection
            partial = stack.enter_context(connect(router.port))
            partial.sendall(PARTIAL)
            silent = stack.enter_context(connect(router.port))
            dripping = stack.enter_context(connect(router.port))
            dripping.sendall(b"GET /drip HTTP/1.1\r\nHost: h\r\n")
            dripping.settimeout(0.1)
            # A client that keeps sending, one byte at a time, is still cut.
            answer = b""
            for _ in range(100):
                with contextlib.suppress(TimeoutError):
                    answer = dripping.recv(65536)
                    break
                dripping.sendall(b"X")
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            r = ResponseReader(partial).read()
            assert (r.status, r.header("connection")) == (408, "close")
            assert ResponseReader(partial).closed()
            assert silent.recv(100) == b""  # closed without an answer: it asked for nothing
            # The idle keep-alive connection waited as long, and is still served.
            assert request(idle, "/after") == 200
        assert [s.target for s in backend.since(0)] == ["/before", "/after"]
    finally:
        router.stop(signal.SIGKILL)


def test_slow_clients_are_capped_per_address(tmp_path: Path, backend: RecordingBackend) -> None:
    router = start(tmp_path, backend, extra=("--slow-clients-per-address", "4"))
    try:
        with contextlib.ExitStack() as stack:
            slow = [stack.enter_context(connect(router.port)) for _ in range(4)]
            for s in slow:
                s.sendall(PARTIAL)
            wait_for(lambda: sending_headers(router) == 4, "4 clients part-way through headers")
            fifth = stack.enter_context(connect(router.port))
            fifth.sendall(PARTIAL)
            r = ResponseReader(fifth).read()
            assert (r.status, r.header("connection")) == (429, "close")
            # Another address is not affected, nor a request that arrives whole.
            other = stack.enter_context(connect(router.port, source="127.0.0.2"))
            other.sendall(PARTIAL)
            wait_for(lambda: sending_headers(router) == 5, "the other address counted")
            other.sendall(b"\r\n")
            assert ResponseReader(other).read().status == 200
            with connect(router.port) as fast:
                assert request(fast, "/fast") == 200
            # Slow clients that finish their headers, or leave, give their place back.
            slow[0].sendall(b"\r\n")
            assert ResponseReader(slow[0]).read().status == 200
            for s in slow[1:]:
                s.close()
            wait_for(lambda: sending_headers(router) == 0, "the slow clients to be forgotten")
            again = stack.enter_context(connect(router.port))
            again.sendall(PARTIAL)
            wait_for(lambda: sending_headers(router) == 1, "a new slow client accepted")
            again.sendall(b"\r\n")
            assert ResponseReader(again).read().status == 200
    finally:
        router.stop(signal.SIGKILL)
