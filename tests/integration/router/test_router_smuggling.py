"""Request smuggling and malformed requests against the real router and a recording backend.

Each CORPUS entry is sent on a new connection followed, on the same connection, by a valid
pipelined request, and then a fresh client sends one more. The recording backend must have
parsed exactly the requests the entry says (nothing smuggled), each carrying the router's
X-Forwarded-For and one unambiguous framing, and every client must get its own response: a
refused entry gets its status and a closed connection, and its pipelined request goes nowhere.

One router and one backend serve the whole module, so the corpus runs in about a second.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from recording_backend import STRAY, RecordingBackend, Seen
from router_kit import ResponseReader, RouterProc, start_router, wait_for

from zerodown.core.routes import Backend, Pool, RouteTable

HOP_BY_HOP = ("connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization")


@dataclass(frozen=True)
class Fwd:
    """A request the backend must receive; target "" is the entry's own path ({T})."""

    method: str = "GET"
    body: bytes = b""
    target: str = ""
    host: str | None = "h"  # None: the backend's own address (HTTP/1.0 without Host)
    xff: str = "127.0.0.1"
    upgrade: str | None = None  # an upgrade request: Connection and Upgrade are the router's

    def target_in(self, path: str) -> str:
        return (self.target or "{T}").replace("{T}", path)


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes  # {T} stands for the entry's own path
    forwarded: tuple[Fwd, ...] = ()  # answered 200, in this order ...
    status: int = 0  # ... then refused with this status and the connection closed
    closes: bool = False  # the connection ends after the forwarded requests
    head: bool = False  # the (single) forwarded request is a HEAD


def refused(name: str, status: int, raw: bytes, *before: Fwd) -> Case:
    return Case(name, raw, before, status=status)


def forwarded(name: str, raw: bytes, *fwd: Fwd, closes: bool = False, head: bool = False) -> Case:
    return Case(name, raw, fwd or (Fwd(),), closes=closes, head=head)


def req(
    *fields: bytes,
    body: bytes = b"",
    method: bytes = b"POST",
    target: bytes = b"{T}",
    version: bytes = b"HTTP/1.1",
    host: bytes | None = b"h",
) -> bytes:
    lines = [b"%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += fields
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def get(
    *fields: bytes,
    target: bytes = b"{T}",
    version: bytes = b"HTTP/1.1",
    host: bytes | None = b"h",
    body: bytes = b"",
) -> bytes:
    return req(*fields, method=b"GET", target=target, version=version, host=host, body=body)


ABC = b"3\r\nabc\r\n0\r\n\r\n"  # "abc", chunked
TE = b"Transfer-Encoding: chunked"
SMUGGLED = b"GET /slow/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
POST_ABC = Fwd("POST", b"abc")

CORPUS = [
    # Content-Length and Transfer-Encoding together, either order (RFC 9112 6.1, 6.3).
    refused("cl-te", 400, req(b"Content-Length: 5", TE, body=b"0\r\n\r\n")),
    refused("te-cl", 400, req(TE, b"Content-Length: 3", body=ABC)),
    refused("te-cl-zero", 400, req(TE, b"Content-Length: 0", body=ABC)),
    refused("cl-te-gzip", 400, req(b"Content-Length: 3", b"Transfer-Encoding: gzip", body=b"abc")),
    # Content-Length: one, digits only (RFC 9112 6.3).
    refused("cl-twice-same", 400, req(b"Content-Length: 3", b"Content-Length: 3", body=b"abc")),
    refused(
        "cl-twice-different", 400, req(b"Content-Length: 3", b"Content-Length: 30", body=b"abc")
    ),
    refused("cl-twice-case", 400, req(b"Content-Length: 3", b"content-length: 3", body=b"abc")),
    refused("cl-list", 400, req(b"Content-Length: 3, 3", body=b"abc")),
    refused("cl-plus", 400, req(b"Content-Length: +3", body=b"abc")),
    refused("cl-minus", 400, req(b"Content-Length: -3", body=b"abc")),
    refused("cl-hex", 400, req(b"Content-Length: 0x3", body=b"abc")),
    refused("cl-inner-space", 400, req(b"Content-Length: 3 3", body=b"abc")),
    refused("cl-empty", 400, req(b"Content-Length:", body=b"abc")),
    refused("cl-overflow", 400, req(b"Content-Length: " + b"9" * 25, body=b"abc")),
    refused("cl-underscore", 400, req(b"Content_Length: 3", body=b"abc")),
    forwarded("cl-leading-zeros", req(b"Content-Length: 003", body=b"abc"), POST_ABC),
    forwarded("cl-trailing-space", req(b"Content-Length: 3 ", body=b"abc"), POST_ABC),
    forwarded("cl-lowercase", req(b"content-length: 3", body=b"abc"), POST_ABC),
    forwarded("cl-zero", req(b"Content-Length: 0"), Fwd("POST")),
    forwarded("cl-on-get", get(b"Content-Length: 3", body=b"abc"), Fwd("GET", b"abc")),
    # Transfer-Encoding: exactly chunked, as the final and only coding (RFC 9112 6.1, 7).
    refused("te-gzip-chunked", 501, req(b"Transfer-Encoding: gzip, chunked", body=ABC)),
    refused(
        "te-two-fields",
        501,
        req(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked", body=ABC),
    ),
    refused("te-identity-chunked", 501, req(b"Transfer-Encoding: identity, chunked", body=ABC)),
    refused("te-chunked-gzip", 400, req(b"Transfer-Encoding: chunked, gzip", body=ABC)),
    refused("te-identity", 400, req(b"Transfer-Encoding: identity", body=b"abc")),
    refused("te-chunked-chunked", 400, req(b"Transfer-Encoding: chunked, chunked", body=ABC)),
    refused("te-chunked-twice", 400, req(TE, TE, body=ABC)),
    refused("te-xchunked", 400, req(b"Transfer-Encoding: xchunked", body=ABC)),
    refused("te-quoted", 400, req(b'Transfer-Encoding: "chunked"', body=ABC)),
    refused("te-space-before-colon", 400, req(b"Transfer-Encoding : chunked", body=ABC)),
    refused("te-vertical-tab", 400, req(b"Transfer-Encoding: chunked\x0b", body=ABC)),
    refused("te-empty", 400, req(b"Transfer-Encoding:", body=ABC)),
    refused("te-obs-fold", 400, req(b"Transfer-Encoding:\r\n chunked", body=ABC)),
    refused("te-http10", 400, req(TE, version=b"HTTP/1.0", body=ABC)),
    refused("te-underscore", 400, req(b"Transfer_Encoding: chunked", body=ABC)),
    forwarded("te-chunked", req(TE, body=ABC), POST_ABC),
    forwarded("te-uppercase", req(b"Transfer-Encoding: CHUNKED", body=ABC), POST_ABC),
    forwarded("te-tab", req(b"Transfer-Encoding:\tchunked", body=ABC), POST_ABC),
    forwarded("te-empty-element", req(b"Transfer-Encoding: , chunked", body=ABC), POST_ABC),
    # Connection can never remove framing: the issue's smuggling, and its variants.
    forwarded(
        "connection-content-length",
        req(b"Connection: Content-Length", b"Content-Length: %d" % len(SMUGGLED), body=SMUGGLED),
        Fwd("POST", SMUGGLED),
    ),
    forwarded(
        "connection-transfer-encoding",
        req(
            b"Connection: Transfer-Encoding",
            TE,
            body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
        ),
        Fwd("POST", SMUGGLED),
    ),
    forwarded("connection-host", get(b"Connection: Host")),
    forwarded(
        "connection-xff",
        get(b"Connection: X-Forwarded-For", b"X-Forwarded-For: 10.9.8.7"),
        Fwd(xff="10.9.8.7, 127.0.0.1"),
    ),
    forwarded(
        "connection-close-content-length",
        req(b"Connection: close, Content-Length", b"Content-Length: 3", body=b"abc"),
        POST_ABC,
        closes=True,
    ),
    # Line endings, control bytes, names (RFC 9112 2.2, 5; RFC 9110 5.5).
    refused("obs-fold", 400, get(b"X-A: a", b" b")),
    refused("obs-fold-tab", 400, get(b"X-A: a", b"\tb")),
    refused("bare-lf", 400, b"GET {T} HTTP/1.1\nHost: h\n\n"),
    refused("bare-lf-in-header", 400, b"GET {T} HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n"),
    refused("bare-cr", 400, b"GET {T} HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n"),
    refused("nul-in-value", 400, get(b"X-A: a\x00b")),
    refused("ctl-in-value", 400, get(b"X-A: a\x01b")),
    refused("del-in-value", 400, get(b"X-A: a\x7fb")),
    refused("nul-in-name", 400, get(b"X\x00A: b")),
    refused("space-in-name", 400, get(b"X A: b")),
    refused("empty-name", 400, get(b": b")),
    refused("space-before-first-header", 400, b"GET {T} HTTP/1.1\r\n Host: h\r\n\r\n"),
    refused("ctl-in-target", 400, get(target=b"{T}\x01")),
    refused("space-in-target", 400, get(target=b"{T} x")),
    refused("fragment-in-target", 400, get(target=b"{T}#frag")),
    refused("lowercase-method", 400, req(method=b"get")),
    refused("lowercase-version", 400, get(version=b"http/1.1")),
    forwarded("tab-in-value", get(b"X-A: a\tb")),
    forwarded("obs-text-in-value", get(b"X-A: caf\xe9")),
    forwarded("leading-empty-line", b"\r\n" + get()),
    # Host (RFC 9112 3.2).
    refused("no-host", 400, get(host=None)),
    refused("two-hosts", 400, get(b"Host: evil")),
    refused("host-comma", 400, get(host=b"h, evil")),
    refused("host-space", 400, get(host=b"h evil")),
    refused("host-slash", 400, get(host=b"h/evil")),
    refused("host-userinfo", 400, get(host=b"u@h")),
    forwarded("host-port", get(host=b"h:8080"), Fwd(host="h:8080")),
    forwarded("host-ipv6", get(host=b"[::1]:8080"), Fwd(host="[::1]:8080")),
    forwarded(
        "http10-without-host",
        get(b"Connection: keep-alive", version=b"HTTP/1.0", host=None),
        Fwd(host=None),
    ),
    # Request targets (RFC 9112 3.2): absolute-form becomes origin-form.
    forwarded("absolute-form", get(target=b"http://h{T}?q=1"), Fwd(target="{T}?q=1")),
    forwarded("absolute-form-https-case", get(target=b"HTTPS://H{T}"), Fwd(host="H")),
    forwarded("absolute-form-default-port", get(target=b"http://h:80{T}"), Fwd(host="h:80")),
    forwarded(
        "absolute-form-http10",
        get(b"Connection: keep-alive", target=b"http://h{T}", version=b"HTTP/1.0", host=None),
    ),
    forwarded(
        "absolute-form-no-path",
        req(method=b"OPTIONS", target=b"http://h"),
        Fwd("OPTIONS", target="/"),
    ),
    refused("absolute-form-other-host", 400, get(target=b"http://evil{T}")),
    refused("absolute-form-without-host", 400, get(target=b"http://h{T}", host=None)),
    refused("absolute-form-userinfo", 400, get(target=b"http://u@h{T}")),
    refused("absolute-form-ftp", 400, get(target=b"ftp://h{T}")),
    refused("relative-target", 400, get(target=b"c/relative")),
    refused("asterisk-get", 400, get(target=b"*")),
    forwarded("asterisk-options", req(method=b"OPTIONS", target=b"*"), Fwd("OPTIONS", target="*")),
    refused("connect", 405, req(method=b"CONNECT", target=b"h:443", host=b"h:443")),
    # Versions: HTTP/1.0 and 1.1 only.
    refused("http09", 505, b"GET {T}\r\n\r\n"),
    refused("http2-preface", 505, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    refused("http2-request-line", 505, get(version=b"HTTP/2.0")),
    refused("http12", 505, get(version=b"HTTP/1.2")),
    # Sizes.
    refused("long-target", 414, get(target=b"{T}/" + b"a" * 9000)),
    refused("long-header", 431, get(b"X-Big: " + b"b" * 40_000)),
    refused("many-headers", 431, get(*[b"X-N%d: n" % i for i in range(101)])),
    refused(
        "many-bytes-of-headers", 431, get(*[b"X-N%d: %s" % (i, b"n" * 400) for i in range(90)])
    ),
    # Chunked bodies (RFC 9112 7.1).
    refused("chunk-size-negative", 400, req(TE, body=b"-1\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-size-0x", 400, req(TE, body=b"0x3\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-size-overflow", 400, req(TE, body=b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-size-leading-space", 400, req(TE, body=b" 3\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-size-trailing-space", 400, req(TE, body=b"3 \r\nabc\r\n0\r\n\r\n")),
    refused("chunk-size-empty", 400, req(TE, body=b"\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-data-too-long", 400, req(TE, body=b"3\r\nabcd\r\n0\r\n\r\n")),
    refused("chunk-data-no-crlf", 400, req(TE, body=b"3\r\nabcX0\r\n\r\n")),
    refused("chunk-lf-only", 400, req(TE, body=b"3\nabc\n0\n\n")),
    refused("chunk-extension-bare-lf", 400, req(TE, body=b"3;a\nb\r\nabc\r\n0\r\n\r\n")),
    refused("chunk-extension-open-quote", 400, req(TE, body=b'3;a="b\r\nabc\r\n0\r\n\r\n')),
    refused(
        "trailer-content-length", 400, req(TE, body=b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n")
    ),
    refused("trailer-obs-fold", 400, req(TE, body=b"0\r\nX-T: 1\r\n 2\r\n\r\n")),
    forwarded("chunk-extension", req(TE, body=b"3;a=b\r\nabc\r\n0;z\r\n\r\n"), POST_ABC),
    forwarded("chunk-extension-quoted", req(TE, body=b'3;a="b\\"c"\r\nabc\r\n0\r\n\r\n'), POST_ABC),
    forwarded(
        "chunk-extension-long",
        req(TE, body=b"3;" + b"x" * 4000 + b"\r\nabc\r\n0\r\n\r\n"),
        POST_ABC,
    ),
    forwarded(
        "chunk-trailers", req(TE, body=b"3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"), POST_ABC
    ),
    forwarded("chunk-empty-body", req(TE, body=b"0\r\n\r\n"), Fwd("POST")),
    forwarded("chunk-many", req(TE, body=b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"), POST_ABC),
    forwarded(
        "chunk-uppercase-hex",
        req(TE, body=b"A\r\n0123456789\r\n0\r\n\r\n"),
        Fwd("POST", b"0123456789"),
    ),
    forwarded(
        "chunk-holds-a-request",
        req(TE, body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
        Fwd("POST", SMUGGLED),
    ),
    # Pipelining: each request is framed and forwarded on its own.
    forwarded(
        "pipelined-short-length",
        req(b"Content-Length: 3", body=b"abc" + get(target=b"{T}/2")),
        POST_ABC,
        Fwd(target="{T}/2"),
    ),
    forwarded(
        "pipelined-three",
        get()
        + req(TE, target=b"{T}/2", body=ABC)
        + req(b"Content-Length: 1", target=b"{T}/3", body=b"z"),
        Fwd(),
        Fwd("POST", b"abc", target="{T}/2"),
        Fwd("POST", b"z", target="{T}/3"),
    ),
    refused(
        "valid-then-cl-te",
        400,
        get() + req(b"Content-Length: 3", TE, target=b"{T}/2", body=ABC),
        Fwd(),
    ),
    refused("valid-then-bare-lf", 400, get() + b"GET {T}/2 HTTP/1.1\nHost: h\n\n", Fwd()),
    forwarded(
        "head-with-body",
        req(b"Content-Length: 3", method=b"HEAD", body=b"abc"),
        Fwd("HEAD", b"abc"),
        head=True,
    ),
    forwarded(
        "expect-continue", req(b"Expect: 100-continue", b"Content-Length: 3", body=b"abc"), POST_ABC
    ),
    forwarded(
        "upgrade-websocket",
        get(b"Connection: Upgrade", b"Upgrade: websocket"),
        Fwd(upgrade="websocket"),  # forwarded; the backend declines it (200, not 101)
        closes=True,  # what follows an Upgrade request is not read as HTTP
    ),
    forwarded(
        "upgrade-without-connection-upgrade",
        get(b"Upgrade: websocket"),  # Upgrade counts only when Connection names it: dropped
    ),
    forwarded(
        "upgrade-http10",
        get(b"Connection: Upgrade", b"Upgrade: websocket", version=b"HTTP/1.0"),
        Fwd(),
        closes=True,
    ),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[RecordingBackend]:
    b = RecordingBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, backend: RecordingBackend
) -> Iterator[RouterProc]:
    r = start_router(tmp_path_factory.mktemp("smuggling"))
    r.apply(RouteTable(1, (Pool("rec", 100, (Backend(backend.address, "rec"),)),)))
    yield r
    r.stop()


def send(port: int, raw: bytes) -> tuple[socket.socket, ResponseReader]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(raw)
    return s, ResponseReader(s)


def fetch(port: int, target: str) -> bytes:
    s, reader = send(port, b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target.encode())
    with s:
        r = reader.read()
    assert r.status == 200, (target, r)
    return r.body


def check_forwarded(seen: Seen, want: Fwd, path: str, backend: RecordingBackend) -> None:
    assert (seen.method, seen.target, seen.body) == (want.method, want.target_in(path), want.body)
    assert seen.values("host") == [want.host or backend.address]
    assert seen.values("x-forwarded-for") == [want.xff]  # the router's, always appended
    assert seen.values("x-forwarded-proto") == ["http"]
    for name in HOP_BY_HOP:
        if want.upgrade and name == "connection":
            assert seen.values(name) == ["upgrade"]
        elif want.upgrade and name == "upgrade":
            assert seen.values(name) == [want.upgrade]
        else:
            assert not seen.values(name), name
    framing = seen.values("content-length") + seen.values("transfer-encoding")
    if seen.values("transfer-encoding"):
        assert framing == ["chunked"]
    elif seen.body or want.method == "POST":
        assert framing == [str(len(seen.body))]


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus(case: Case, router: RouterProc, backend: RecordingBackend) -> None:
    path = f"/c/{case.name}"
    before = backend.count()
    after = Fwd(target=f"{path}/after")
    s, reader = send(
        router.port, case.raw.replace(b"{T}", path.encode()) + get(target=f"{path}/after".encode())
    )
    with s:
        for fwd in case.forwarded:
            r = reader.read(head=case.head)
            assert r.status == 200, r
            if not case.head:
                assert r.body == f"{fwd.method} {fwd.target_in(path)}".encode()  # its own
        if case.status:
            r = reader.read()
            assert (r.status, r.header("connection")) == (case.status, "close"), r
            assert reader.closed()
            expected = [*case.forwarded]
        elif case.closes:
            assert reader.closed()
            expected = [*case.forwarded]
        else:
            r = reader.read()
            assert (r.status, r.body) == (200, f"GET {path}/after".encode()), r
            expected = [*case.forwarded, after]
    assert fetch(router.port, f"{path}/fresh") == f"GET {path}/fresh".encode()
    expected.append(Fwd(target=f"{path}/fresh"))
    seen = backend.since(before)
    assert [(x.method, x.target) for x in seen] == [(f.method, f.target_in(path)) for f in expected]
    for got, want in zip(seen, expected, strict=True):
        check_forwarded(got, want, path, backend)
    assert backend.problems == []


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60
    assert len({c.name for c in CORPUS}) == len(CORPUS)


def test_issue_reproduction_connection_content_length(
    router: RouterProc, backend: RecordingBackend
) -> None:
    """Issue 10: POST /upload naming Content-Length in Connection, whose body is a complete
    GET /slow, then clients sending GET /healthz: each must get its own response."""
    before = backend.count()
    body = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
    for _ in range(5):
        upload = req(
            b"Connection: Content-Length",
            b"Content-Length: %d" % len(body),
            target=b"/upload",
            body=body,
        )
        s, reader = send(router.port, upload)
        with s:
            assert reader.read().body == b"POST /upload"
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: fetch(router.port, "/healthz"), range(4)))
        assert results == [b"GET /healthz"] * 4
    seen = backend.since(before)
    assert sorted((x.method, x.target) for x in seen) == sorted(
        [("POST", "/upload")] * 5 + [("GET", "/healthz")] * 20
    )
    assert all(x.body == body for x in seen if x.method == "POST")
    assert all(x.values("x-forwarded-for") == ["127.0.0.1"] for x in seen)
    assert backend.problems == []


@pytest.mark.parametrize("target", ["/extra", "/late-extra"])
def test_backend_connection_with_stray_bytes_is_never_reused(
    target: str, router: RouterProc, backend: RecordingBackend
) -> None:
    """A response followed by bytes nobody asked for (at once, or while the connection idles in
    the pool): that connection is closed, and the next client gets its own response."""
    before = backend.count()
    assert fetch(router.port, target) == f"GET {target}".encode()
    conn = backend.since(before)[0].conn
    wait_for(lambda: conn in backend.ended, "the router to close the connection with stray bytes")
    for i in range(3):
        got = fetch(router.port, f"/next{target}/{i}")
        assert got == f"GET /next{target}/{i}".encode() and got != STRAY
    assert all(x.conn != conn for x in backend.since(before)[1:])
