"""The router's data plane against real backends: forwarding, keep-alive, streaming, errors."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from router_kit import (
    BackendProc,
    RouterProc,
    dead_backend,
    established_to,
    name_of,
    raw_http,
    table,
    wait_for,
)


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10, trust_env=False)


def test_forwards_with_keep_alive_on_both_sides(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    # Client side: several requests on one connection.
    req = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(req)
        got = b""
        while got.count(b'"name"') < 2:
            chunk = s.recv(65536)
            assert chunk, f"router closed a keep-alive connection: {got!r}"
            got += chunk
        s.sendall(b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        more = s.recv(65536)
        assert b"HTTP/1.1 200" in more
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert b'"path": "/one"' in got and b'"path": "/two"' in got
    # Backend side: sequential requests reuse one pooled connection (same source port).
    with client(router.url) as c:
        ports = {c.get("/").json()["peer_port"] for _ in range(10)}
    assert len(ports) == 1


def test_request_and_response_headers(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    with client(router.url) as c:
        r = c.get(
            "/hdr",
            headers={
                "X-Forwarded-For": "10.1.2.3",
                "X-Forwarded-Proto": "https",
                "Connection": "keep-alive, X-Private",
                "X-Private": "hop",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "TE": "trailers",
                "Trailer": "X-Foo",
                "X-End-To-End": "kept",
            },
        )
        seen = r.json()["headers"]
        assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-end-to-end"] == "kept"
        for hop in ("x-private", "keep-alive", "proxy-authorization", "te", "trailer"):
            assert hop not in seen, hop
        r = c.get("/hop")
        assert r.headers["x-kept"] == "yes"
        for hop in ("x-private", "keep-alive", "proxy-authenticate"):
            assert hop not in r.headers, hop
        plain = c.get("/")
        assert plain.json()["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_streams_large_upload_both_framings(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    data = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)  # 20 MiB

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    with client(router.url) as c:
        for body in (data, pieces()):  # Content-Length, then chunked
            r = c.post("/upload", content=body)
            assert r.status_code == 200
            assert r.json()["bytes"] == len(data)
            assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        r = c.get("/big", params={"n": 5_000_000})
        assert len(r.content) == 5_000_000


def test_streams_both_ways_without_buffering(router: RouterProc, backend_a: BackendProc) -> None:
    """The echo backend answers each piece as it comes: only possible if nothing is buffered."""
    router.apply(table(1, ("a", 100, [backend_a])))
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        got = b""
        for word in (b"hello", b"world", b"again"):
            s.sendall(b"%x\r\n%s\r\n" % (len(word), word))
            while word not in got:
                chunk = s.recv(65536)
                assert chunk
                got += chunk
        s.sendall(b"0\r\n\r\n")
        while not got.endswith(b"0\r\n\r\n"):
            got += s.recv(65536)


@pytest.mark.slow  # a second or more: the full suite runs it
def test_server_sent_events_arrive_one_by_one(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    with client(router.url) as c, c.stream("GET", "/sse", params={"n": 6, "every": 0.3}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        start = time.monotonic()
        events = []
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append((line, time.monotonic() - start))
        assert [e for e, _ in events] == [f"data: {i}" for i in range(6)]
        # The first event came long before the stream ended (6 x 0.3 s): not buffered.
        assert events[0][1] < events[-1][1] - 0.5


def test_malformed_request_gets_400_and_router_keeps_serving(
    router: RouterProc, backend_a: BackendProc
) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    for garbage in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\r\n",
    ):
        answer = raw_http(router.port, garbage)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    answer = raw_http(router.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    with client(router.url) as c:
        assert c.get("/").status_code == 200


def test_503_without_backend_and_502_when_unreachable(router: RouterProc) -> None:
    with client(router.url) as c:
        r = c.get("/")
        assert r.status_code == 503
        dead = dead_backend()
        router.apply(table(1, ("a", 100, [dead])))
        r = c.get("/")
        assert r.status_code == 502
    stats = router.stats()
    assert stats["releases"]["a"]["transport_errors"] == 1


def _load(
    url: str, stop: threading.Event, results: list[int], errors: list[str], path: str = "/"
) -> Callable[[], None]:
    def run() -> None:
        with client(url) as c:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    r = c.get(path)
                    results.append(r.status_code)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:100]}")
                except httpx.HTTPError as e:
                    errors.append(repr(e))

    return run


def test_connect_refused_is_retried_on_another_backend(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    dead = dead_backend()
    router.apply(table(1, ("a", 50, [dead, backend_a]), ("b", 50, [backend_b])))
    with client(router.url) as c:
        names = [name_of(c.get("/")) for _ in range(200)]
    assert names.count("a") > 50  # release a still served, by its live backend
    stats = router.stats()
    assert stats["releases"]["a"]["transport_errors"] == 0
    # A pool whose only backend refuses falls over to the other release.
    router.apply(table(2, ("a", 50, [dead]), ("b", 50, [backend_b])))
    with client(router.url) as c:
        assert {name_of(c.get("/")) for _ in range(50)} == {"b"}


@pytest.mark.slow  # a second or more: the full suite runs it
def test_no_failed_request_while_a_backend_leaves_and_dies(
    router: RouterProc, backends: Callable[[str], BackendProc]
) -> None:
    old, new = backends("old"), backends("new")
    router.apply(table(1, ("v1", 100, [old])))
    stop = threading.Event()
    results: list[int] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_load(router.url, stop, results, errors)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) > 200, "load through the router")
        router.apply(table(2, ("v1", 0, [old]), ("v2", 100, [new])))
        router.apply(table(3, ("v2", 100, [new])))
        wait_for(
            lambda: router.stats()["backends"].get(old.address, {}).get("inflight", 0) == 0,
            "old backend drained",
        )
        old.kill()
        seen = len(results)
        wait_for(lambda: len(results) > seen + 300, "load after the kill")
        # And while a backend in the table refuses connections:
        dead = dead_backend()
        router.apply(table(4, ("v2", 100, [dead, new])))
        seen = len(results)
        wait_for(lambda: len(results) > seen + 300, "load with a dead backend in the table")
    finally:
        stop.set()
        for t in threads:
            t.join(35)
    assert errors == []
    assert old.address not in router.stats()["backends"]


def test_head_and_no_body_statuses(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    with client(router.url) as c:
        for _ in range(3):  # the pooled connection stays usable after HEAD
            r = c.head("/")
            assert r.status_code == 200 and r.content == b""
            assert c.get("/status", params={"code": 204}).status_code == 204
            r = c.get("/status", params={"code": 404})
            assert r.status_code == 404 and name_of(r) == "a"
            assert c.get("/").status_code == 200
    releases = router.stats()["releases"]["a"]
    assert releases["responses_4xx"] == 3


def test_http10_client(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    answer = raw_http(router.port, b"GET /big?n=100000 HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert len(body) == 100000
    answer = raw_http(router.port, b"GET / HTTP/1.0\r\n\r\n")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["name"] == "a"


def test_reused_connection_closed_by_backend_is_retried(
    router: RouterProc, backends: Callable[..., BackendProc]
) -> None:
    flaky = backends("flaky", script="flaky_backend.py")
    router.apply(table(1, ("f", 100, [flaky])))
    with client(router.url) as c:
        for i in range(40):
            r = c.get("/") if i % 2 else c.post("/", content=b"x" * 1000)
            assert r.status_code == 200, r.text
        # A body too large to keep for a replay cannot be sent again: 502, not a lost request.
        assert c.get("/").status_code == 200
        r = c.post("/", content=b"x" * 200_000)
        assert r.status_code == 502
        assert "cannot be resent" in r.text
    assert router.stats()["releases"]["f"]["transport_errors"] == 1


def test_expect_100_continue_and_pipelined_bodies(
    router: RouterProc, backend_a: BackendProc
) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n"), got
        s.sendall(b"hello")
        while b'"bytes": 5' not in got:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        # Two pipelined requests with bodies, in one write.
        s.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nwxyz\r\n0\r\n\r\n"
        )
        got = b""
        while got.count(b'"bytes"') < 2:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        assert got.index(b'"bytes": 3') < got.index(b'"bytes": 4')


def test_client_leaving_early_frees_the_backend(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET /slow?s=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(
            lambda: router.stats()["backends"][backend_a.address]["inflight"] == 1, "in flight"
        )
    # Released long before the backend would have answered (5 s).
    wait_for(lambda: router.stats()["backends"][backend_a.address]["inflight"] == 0, "released", 3)
    with client(router.url) as c:
        assert c.get("/").status_code == 200


def test_backend_dying_mid_response_truncates_only_that_response(
    router: RouterProc, backends: Callable[..., BackendProc], backend_a: BackendProc
) -> None:
    doomed = backends("doomed")
    router.apply(table(1, ("d", 100, [doomed])))
    with client(router.url) as c:
        with c.stream("GET", "/sse", params={"n": 100, "every": 0.05}) as r:
            lines = r.iter_lines()
            assert next(lines) == "data: 0"
            doomed.kill()
            # Cut short: the client sees a broken response, never a made-up complete one.
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
        router.apply(table(2, ("a", 100, [backend_a])))
        assert c.get("/").status_code == 200
    stats = router.stats()
    assert stats["releases"]["d"]["transport_errors"] == 1
    assert stats["backends"].get(doomed.address) is None


def test_idle_connections_close_when_the_backend_leaves_the_table(
    router: RouterProc, backends: Callable[..., BackendProc], backend_a: BackendProc
) -> None:
    leaving = backends("leaving")
    router.apply(table(1, ("l", 100, [leaving])))
    threads = [
        threading.Thread(target=lambda: httpx.get(router.url, trust_env=False)) for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert established_to(leaving.port) >= 1  # pooled, idle
    router.apply(table(2, ("a", 100, [backend_a])))
    wait_for(lambda: established_to(leaving.port) == 0, "pooled connections closed", timeout=2)


def test_oversized_request_head_is_refused(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    huge = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n"
    assert raw_http(router.port, huge).startswith(b"HTTP/1.1 431 ")
    long_url = b"GET /" + b"u" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_http(router.port, long_url).startswith(b"HTTP/1.1 414 ")
    with client(router.url) as c:
        assert c.get("/").status_code == 200


@pytest.mark.slow  # a second or more: the full suite runs it
def test_backend_crashing_in_the_table_loses_no_unanswered_get(
    router: RouterProc, backends: Callable[..., BackendProc]
) -> None:
    """kill -9 of a backend still in the table: its GETs that got no answer byte yet are
    retried on the other backend, new ones skip the refusing address. Only a response the
    backend had already started can break (the router cannot take back bytes it forwarded)."""
    crashing, staying = backends("crashing"), backends("staying")
    router.apply(table(1, ("v1", 100, [crashing, staying])))
    stop = threading.Event()
    results: list[int] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_load(router.url, stop, results, errors, "/slow?s=0.02"))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) > 100, "load through the router")
        crashing.kill()
        seen = len(results)
        wait_for(lambda: len(results) > seen + 300, "load after the crash")
    finally:
        stop.set()
        for t in threads:
            t.join(35)
    assert not [e for e in errors if not e.startswith("RemoteProtocolError")], errors
    assert len(errors) <= len(threads), errors  # at most the responses under way at the kill


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_slow_client_applies_backpressure_instead_of_buffering(
    router: RouterProc, backend_a: BackendProc
) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    size = 400 * 1024 * 1024
    before = _rss_mib(router.proc.pid)
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
        got = len(s.recv(65536))
        time.sleep(1.5)  # not reading: the router must stop reading from the backend
        grown = _rss_mib(router.proc.pid) - before
        assert grown < 100, f"router buffered {grown:.0f} MiB for a client that does not read"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    assert got > size  # all of it arrived (plus the head and chunk framing)


@pytest.mark.slow
def test_backend_not_reading_pauses_the_upload(router: RouterProc, backend_a: BackendProc) -> None:
    router.apply(table(1, ("a", 100, [backend_a])))
    size = 300 * 1024 * 1024
    piece = b"u" * (1 << 20)
    sent = 0
    peak = 0.0
    before = _rss_mib(router.proc.pid)

    def body() -> Iterator[bytes]:
        nonlocal sent, peak
        while sent < size:
            sent += len(piece)
            peak = max(peak, _rss_mib(router.proc.pid) - before)
            yield piece

    with client(router.url) as c:
        r = c.post("/upload", params={"delay": 1.5}, content=body(), timeout=60)
    assert r.json()["bytes"] == size
    assert peak < 100, f"router buffered {peak:.0f} MiB of an upload the backend did not read"
