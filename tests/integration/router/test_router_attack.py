"""Attacks on the router that the smuggling corpus does not cover: a backend's response that
does not match the request it owed, read by a client that pipelines.

Found by the attack pass of 2026-12-01 (h/attack). Each test states what the router must do;
the tests marked xfail(strict=True) fail today and document a defect for the fix to remove.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from recording_backend import STRAY, RecordingBackend
from router_kit import ResponseReader, RouterProc, start_router

from zerodown.core.routes import Backend, Pool, RouteTable

# Canned answers of a misbehaving backend, by target: each is written in ONE write.
EVIL = {
    # a 204 "with a body" that is a whole second response
    "/204-body": b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
    # a status below 100 (not HTTP): forwarded as "HTTP/1.1 99 X" today, then the client hangs
    "/status-99": b"HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n",
    # a transfer coding other than chunked: read until close (RFC 9112 6.3), coding kept
    "/te-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIPDATA",
    # variants of the above
    "/204-junk": b"HTTP/1.1 204 No Content\r\n\r\nnot a response at all\r\n\r\n",
    "/204-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\nSMUGGLED",
    "/304-body": b"HTTP/1.1 304 Not Modified\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",
    "/head-body": b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED",  # asked by HEAD
    "/status-000": b"HTTP/1.1 000 X\r\nContent-Length: 0\r\n\r\n",
    "/status-600": b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
    "/te-gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"8\r\nGZIPDATA\r\n0\r\n\r\n",
    "/te-chunked-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nGZIPDATA",
}
CLOSE_AFTER = {"/te-gzip", "/te-chunked-gzip"}  # bodies that run until the connection closes


class EvilBackend:
    """Answers each request with EVIL[target] (else `200 GET target`), one write, keep-alive;
    closes after the answers in CLOSE_AFTER."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)  # these tests send no bodies
                target = head.split(b" ", 2)[1].decode()
                own = b"GET " + target.encode()
                sock.sendall(
                    EVIL.get(
                        target, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(own), own)
                    )
                )
                if target in CLOSE_AFTER:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def recording() -> Iterator[RecordingBackend]:
    b = RecordingBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilBackend]:
    b = EvilBackend()
    yield b
    b.close()


def router_for(tmp: pytest.TempPathFactory, address: str, name: str) -> RouterProc:
    r = start_router(tmp.mktemp(name))
    r.apply(RouteTable(1, (Pool("v1", 100, (Backend(address, "i1"),)),)))
    return r


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, recording: RecordingBackend
) -> Iterator[RouterProc]:
    r = router_for(tmp_path_factory, recording.address, "attack-rec")
    yield r
    r.stop()


@pytest.fixture(scope="module")
def evil_router(
    tmp_path_factory: pytest.TempPathFactory, evil: EvilBackend
) -> Iterator[RouterProc]:
    r = router_for(tmp_path_factory, evil.address, "attack-evil")
    yield r
    r.stop()


def pipelined(port: int, *targets: str, first: str = "GET") -> tuple[socket.socket, ResponseReader]:
    """Send a request per target in one write (the first with method `first`)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    methods = [first] + ["GET"] * (len(targets) - 1)
    s.sendall(
        b"".join(
            b"%s %s HTTP/1.1\r\nHost: h\r\n\r\n" % (m.encode(), t.encode())
            for m, t in zip(methods, targets, strict=True)
        )
    )
    return s, ResponseReader(s)


def test_stray_response_never_answers_the_next_pipelined_request(
    router: RouterProc, recording: RecordingBackend
) -> None:
    """The backend answers /extra and, in the same write, a second response nobody asked for.
    docs/router.md: such a connection 'is closed and never reused'. Today the client's pipelined
    request is started inside the parser callback of the first response, takes the same
    connection from the pool before the parser reaches the stray bytes, and gets SMUGGLED as its
    answer. Behind a front proxy that pipelines for many users this is another user's response."""
    s, reader = pipelined(router.port, "/extra/p", "/mine")
    with s:
        assert reader.read().body == b"GET /extra/p"
        second = reader.read()
    assert second.body != STRAY.split(b"\r\n\r\n")[1]
    assert (second.status, second.body) == (200, b"GET /mine")


def test_bytes_after_a_204_never_answer_the_next_pipelined_request(evil_router: RouterProc) -> None:
    """Same desync through a 204 whose 'body' is a whole response (a buggy app writing a body on
    204 is common): the next pipelined request must get its own answer."""
    s, reader = pipelined(evil_router.port, "/204-body", "/mine")
    with s:
        assert reader.read().status == 204
        second = reader.read()
    assert (second.status, second.body) == (200, b"GET /mine")


def test_status_below_100_is_a_502(evil_router: RouterProc) -> None:
    """`HTTP/1.1 099 X` is no HTTP status (RFC 9110 15: 100-599). Today the router writes
    `HTTP/1.1 99 X` to the client as an interim response and then waits forever for a final one."""
    s, reader = pipelined(evil_router.port, "/status-99")
    with s:
        assert reader.read().status == 502


def test_transfer_coding_other_than_chunked_is_not_passed_off_as_identity(
    evil_router: RouterProc,
) -> None:
    """A response with `Transfer-Encoding: gzip` (read until close, RFC 9112 6.3). Today the
    router drops the coding, sends the gzip bytes as a plain chunked body and aborts the
    connection without the last chunk: the client gets a truncated, undecodable body. It must
    either keep the coding (`Transfer-Encoding: gzip, chunked`) and end the body properly, or 502."""
    s, reader = pipelined(evil_router.port, "/te-gzip")
    with s:
        r = reader.read()
    assert r.status == 502 or (
        r.header("transfer-encoding") == "gzip, chunked" and r.body == b"GZIPDATA"
    )


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/204-junk", 204),
        ("GET", "/204-length", 204),
        ("GET", "/304-body", 304),
        ("HEAD", "/head-body", 200),
    ],
)
def test_bytes_after_a_response_without_body_are_stray(
    evil_router: RouterProc, method: str, target: str, status: int
) -> None:
    """Whatever follows a 204, a 304 or the answer to a HEAD is stray (that connection closes);
    the next pipelined request gets its own answer, never those bytes nor a 502. A 204 never
    carries Content-Length towards the client (RFC 9110 8.6)."""
    s, reader = pipelined(evil_router.port, target, "/mine", first=method)
    with s:
        r = reader.read(head=method == "HEAD")
        second = reader.read()
    assert r.status == status
    if status == 204:
        assert r.header("content-length") is None and r.header("transfer-encoding") is None
    assert (second.status, second.body) == (200, b"GET /mine")


@pytest.mark.parametrize("target", ["/status-000", "/status-600", "/te-chunked-gzip"])
def test_a_response_the_router_cannot_forward_is_a_502(
    evil_router: RouterProc, target: str
) -> None:
    """A status outside 100-599, or chunked under another coding (RFC 9112 6.1 forbids it): 502,
    and the pipelined request after it is answered on another backend connection."""
    s, reader = pipelined(evil_router.port, target, "/mine")
    with s:
        assert reader.read().status == 502
        second = reader.read()
    assert (second.status, second.body) == (200, b"GET /mine")


def test_a_transfer_coding_before_chunked_is_kept(evil_router: RouterProc) -> None:
    """`gzip, chunked` from the backend reaches the client as `gzip, chunked`, body intact."""
    s, reader = pipelined(evil_router.port, "/te-gzip-chunked", "/mine")
    with s:
        r = reader.read()
        second = reader.read()
    assert (r.header("transfer-encoding"), r.body) == ("gzip, chunked", b"GZIPDATA")
    assert (second.status, second.body) == (200, b"GET /mine")


def test_a_transfer_coding_towards_an_http10_client_is_a_502(evil_router: RouterProc) -> None:
    """An HTTP/1.0 client cannot be sent Transfer-Encoding (RFC 9112 6.1), and the body without
    its coding would be corrupt: 502."""
    with socket.create_connection(("127.0.0.1", evil_router.port), timeout=5) as s:
        s.sendall(b"GET /te-gzip HTTP/1.0\r\n\r\n")
        assert ResponseReader(s).read().status == 502
