"""The parser memo of the data plane (dataplane._PARSED, upstream._PARSED) against the parser.

A request or response head the parser has read before is not parsed again: the router reuses what
the parser's callbacks made of those exact bytes. The memo must never change what the router
does, above all never accept what the parser refuses (the hardening issue: one crafted message
desynchronised a keep-alive connection). So every generated exchange (requests and responses
built from valid parts and mutations: odd methods, versions, bytes, separators, line ends,
duplicate or conflicting framing headers, bodies longer or shorter than announced, split reads)
runs three times through an in-process router with fake transports:

- with a memo that never keeps anything (the parser reads every head),
- with the real memo, emptied first (the parser reads, the memo fills),
- again with the memo as the second run left it (heads read before come from the memo),

and the three must write the same bytes to the client and to each backend connection, close the
same connections, pool the same ones and count the same responses.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerodown.core.routes import Backend, Match, Pool, RouteTable, Sticky
from zerodown.routers.proxy import dataplane, upstream
from zerodown.routers.proxy.dataplane import ClientConn
from zerodown.routers.proxy.server import Router
from zerodown.routers.proxy.upstream import UpstreamConn


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.state = "open"

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.7", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.state != "open"

    def close(self) -> None:
        if self.state == "open":
            self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.written += b"<eof>"

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Forgetful(dict[Any, Any]):
    """A memo that keeps nothing: every head goes through the parser."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


@contextmanager
def memo(kind: str) -> Iterator[None]:
    saved = dataplane._PARSED, upstream._PARSED
    if kind == "off":
        dataplane._PARSED, upstream._PARSED = Forgetful(), Forgetful()
    elif kind == "fresh":
        dataplane._PARSED, upstream._PARSED = {}, {}
    try:
        yield
    finally:
        if kind == "off":
            dataplane._PARSED, upstream._PARSED = saved


TABLES = ("plain", "match", "sticky")  # a weighted draw; a header match; a sticky cookie


def run(steps: list[tuple[str, bytes]], table: str) -> dict[str, object]:
    """Play the reads `steps` (("client", bytes) or ("backend", bytes): to the connection the
    current request uses; or ("drain", b"")) through a router; what every transport saw."""

    async def play() -> dict[str, object]:
        router = Router(asyncio.get_running_loop())
        spawned: list[str] = []

        def spawn(coro: Any) -> None:  # a connect: never completes here
            coro.close()
            spawned.append("connect")

        router.spawn = spawn  # type: ignore[method-assign]
        matches = (Match("canary", "yes", header="X-Canary"),) if table == "match" else ()
        sticky = Sticky(cookie="zd") if table == "sticky" else None
        pools = (
            Pool("stable", 100, (Backend("127.0.0.1:9", "b1"),)),
            Pool("canary", 0, (Backend("127.0.0.1:10", "b2"),)),
        )
        router.install(RouteTable(1, pools, matches, sticky))
        router.table.rng.seed(7)  # the same sticky keys in every run
        ups: list[tuple[UpstreamConn, FakeTransport]] = []
        for address in ("127.0.0.1:9", "127.0.0.1:10"):
            backend = router.backends[address]
            for _ in range(3):
                conn = UpstreamConn(backend)
                t = FakeTransport()
                conn.connection_made(t)  # type: ignore[arg-type]
                backend.put_idle(conn, router.now())
                ups.append((conn, t))
        client = ClientConn(router, False)
        ct = FakeTransport()
        client.connection_made(ct)  # type: ignore[arg-type]
        for side, data in steps:
            if side == "drain":  # `zerodown router` stopping: no connection is kept open
                router.draining = True
            elif side == "client":
                if ct.state == "open":
                    client.data_received(data)
            else:
                for conn, t in ups:
                    if conn.ex is not None and t.state == "open":
                        conn.data_received(data)
                        break
            await asyncio.sleep(0)  # call_soon'd work: a pipelined request's start
            await asyncio.sleep(0)
        index = {id(conn): i for i, (conn, _) in enumerate(ups)}
        return {
            "client": (bytes(ct.written), ct.state),
            "backends": [(bytes(t.written), t.state, conn.ex is None) for conn, t in ups],
            "idle": [[index[id(c)] for c in b.idle] for b in router.backends.values()],
            "counts": {name: dict(c.codes) for name, c in router.releases.items()},
            "spawned": spawned,
        }

    return asyncio.run(play())


def differences(steps: list[tuple[str, bytes]], table: str) -> None:
    """The same with the parser alone, with the memo filling, with the memo filled, and with the
    memo filled under the other route table (route headers are picked per table)."""
    with memo("off"):
        parser = run(steps, table)
        other_table = TABLES[(TABLES.index(table) + 1) % len(TABLES)]
        other = run(steps, other_table)
    with memo("fresh"):
        assert run(steps, table) == parser
        assert run(steps, table) == parser
        assert run(steps, other_table) == other


# Generated messages: mostly well-formed, with the mutations that matter for framing.

EOLS = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b"\r\r\n", b" \r\n"])
SEPS = st.sampled_from([b": "] * 6 + [b":", b":  ", b" : ", b":\t", b": \t"])
ODD_BYTES = st.binary(min_size=0, max_size=6).map(lambda b: b.replace(b"\r\n", b""))
VALUE_PARTS = st.sampled_from(
    [
        b"example.com",
        b"keep-alive",
        b"Keep-Alive",
        b"close",
        b"upgrade",
        b"0",
        b"5",
        b"{len}",
        b"{len+1}",
        b"{len-1}",
        b" {len} ",
        b"+5",
        b"5, 5",
        b"chunked",
        b"gzip, chunked",
        b"websocket",
        b"a=b",
        b"yes",
        b"x\x00y",
        b"x\x7fy",
        b"caf\xc3\xa9",
        b"a\tb",
        b"",
        b" ",
    ]
)
VALUES = st.one_of(VALUE_PARTS, VALUE_PARTS, ODD_BYTES)


NICE_VALUES = st.sampled_from(
    [b"keep-alive", b"close", b"text/plain", b"a=b", b"yes", b"yes", b"", b"x "]
)


def header_lines(names: list[bytes], nice: bool = False) -> st.SearchStrategy[bytes]:
    """Mostly valid lines (a memo entry needs a head the parser accepts), some mutated; `nice`:
    only lines the parser accepts, with names that change nothing in the framing."""
    if nice:
        line = st.tuples(st.sampled_from(names), st.just(b": "), NICE_VALUES)
        return st.lists(line.map(lambda t: b"".join(t) + b"\r\n"), max_size=4).map(b"".join)
    valid = st.tuples(st.sampled_from(names), st.just(b": "), VALUE_PARTS).map(
        lambda t: b"".join(t) + b"\r\n"
    )
    name = st.one_of(
        st.sampled_from(names),
        st.text("abcXYZ-_!#~ :@", min_size=0, max_size=6).map(str.encode),
    )
    mutated = st.tuples(name, SEPS, VALUES, EOLS).map(lambda t: b"".join(t))
    return st.lists(st.one_of(valid, valid, valid, mutated), max_size=6).map(b"".join)


REQUEST_NAMES = [
    b"Host",
    b"host",
    b"HOST",
    b"Connection",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Proxy-Connection",
    b"Keep-Alive",
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"X-Zerodown-Flags",
    b"X-Canary",
    b"Content_Length",
    b"Cookie",
    b"User-Agent",
    b"Expect",
]

RESPONSE_NAMES = [
    b"Content-Length",
    b"content-length",
    b"Transfer-Encoding",
    b"Connection",
    b"Upgrade",
    b"Proxy-Connection",
    b"Keep-Alive",
    b"Server",
    b"Date",
    b"X-Zerodown-Flags",
    b"Set-Cookie",
    b"Trailer",
]


NICE_REQUEST_NAMES = [b"Connection", b"X-Canary", b"Cookie", b"User-Agent", b"X-Zerodown-Flags"]
NICE_RESPONSE_NAMES = [b"Connection", b"Server", b"Content-Type", b"Set-Cookie", b"Keep-Alive"]


@st.composite
def request(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)):  # mostly requests the parser accepts: memo entries
        method = draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"POST", b"OPTIONS"]))
        target = draw(st.sampled_from([b"/", b"/a?b=c", b"/x/y", b"http://example.com/z"]))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
        host = draw(st.sampled_from([b"Host: example.com\r\n", b"Host: a:80\r\n"]))
        lines = draw(header_lines(NICE_REQUEST_NAMES, nice=True))
        return method + b" " + target + b" " + version + b"\r\n" + host + lines + b"\r\n"
    method = draw(
        st.sampled_from(
            [b"GET"] * 6 + [b"HEAD", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b"get", b"PRI", b""]
        )
    )
    target = draw(
        st.one_of(
            st.sampled_from([b"/", b"/a?b=c", b"*", b"http://example.com/x", b"/#f", b"/\xff"]),
            st.text('/abc?=&#%"<>\\^`{|} \t', max_size=8).map(str.encode),
        )
    )
    version = draw(
        st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
    )
    host = draw(st.sampled_from([b"Host: example.com\r\n"] * 3 + [b""]))
    head = method + b" " + target + b" " + version + draw(EOLS) + host
    head += draw(header_lines(REQUEST_NAMES)) + draw(st.sampled_from([b"\r\n"] * 4 + [b"\n"]))
    body = draw(st.sampled_from([b"", b"", b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]))
    return (head + body).replace(b"{len}", b"%d" % len(body))


@st.composite
def response(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)):  # mostly responses the parser accepts: memo entries
        status = draw(
            st.sampled_from(
                [b"200 OK", b"404 Not Found", b"503 Busy", b"200 ", b"204 No", b"304 Not Modified"]
            )
        )
        body = draw(st.sampled_from([b"", b"hello", b"x" * 40]))
        lines = draw(header_lines(NICE_RESPONSE_NAMES, nice=True))
        length = b"Content-Length: %d\r\n" % len(body)
        return b"HTTP/1.1 " + status + b"\r\n" + lines + length + b"\r\n" + body
    status = draw(
        st.sampled_from(
            [b"HTTP/1.1 200 OK"] * 6
            + [
                b"HTTP/1.1 404 Not Found",
                b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 304 Not Modified",
                b"HTTP/1.1 100 Continue",
                b"HTTP/1.1 101 Switching Protocols",
                b"HTTP/1.0 200 OK",
                b"HTTP/1.1 200",
                b"HTTP/1.1 200 ",
                b"HTTP/1.1 099 Low",
                b"HTTP/1.1 200 O\xffK",
                b"\r\nHTTP/1.1 200 OK",
            ]
        )
    )
    body = draw(st.sampled_from([b"", b"hello", b"x" * 40, b"5\r\nhello\r\n0\r\n\r\n"]))
    length = draw(st.sampled_from([b"Content-Length: {len}\r\n"] * 4 + [b""]))
    head = status + draw(st.sampled_from([b"\r\n"] * 4 + [b"\n", b"\r"])) + length
    head += draw(header_lines(RESPONSE_NAMES)) + draw(st.sampled_from([b"\r\n"] * 4 + [b"\n"]))
    extra = draw(st.sampled_from([b""] * 6 + [b"\r\n", b"junk", b"HTTP/1.1 200 OK\r\n\r\n"]))
    n = len(body)
    for token, size in ((b"{len+1}", n + 1), (b"{len-1}", max(n - 1, 0)), (b"{len}", n)):
        head = head.replace(token, b"%d" % size)
    return head + body + extra


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@st.composite
def exchanges(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Two or three requests on one client connection, each answered by a response split in up
    to three reads; a request is often sent again byte for byte (a memo hit on the second)."""
    steps: list[tuple[str, bytes]] = []
    first = draw(request())
    answer = draw(response())
    for i in range(draw(st.integers(2, 3))):
        req = first if i == 0 or draw(st.booleans()) else draw(request())
        resp = answer if draw(st.booleans()) else draw(response())
        steps.append(("client", req))
        cuts = draw(st.lists(st.integers(0, 400), max_size=2))
        steps += [("backend", part) for part in split(resp, cuts)]
    return steps


# The edit loop gets a taste; the slow lane (CI) plays ten times as many exchanges.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exchanges(), st.sampled_from(TABLES))
def test_memo_changes_nothing(steps: list[tuple[str, bytes]], table: str) -> None:
    differences(steps, table)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exchanges(), st.sampled_from(TABLES))
def test_memo_changes_nothing_over_more_exchanges(
    steps: list[tuple[str, bytes]], table: str
) -> None:
    differences(steps, table)


WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n"
    b"Connection: keep-alive\r\n\r\nhello from the backend\n"
)


@pytest.mark.parametrize(
    "steps",
    [
        # The common case: a head read before, its body in the same read or the next ones.
        [("client", WRK), ("backend", NGINX)] * 3,
        [("client", WRK), ("backend", NGINX[:-10]), ("backend", NGINX[-10:])] * 3,
        # A response read before followed by stray bytes: the connection is never pooled.
        [("client", WRK), ("backend", NGINX), ("client", WRK), ("backend", NGINX + b"HTTP/1.1")],
        [("client", WRK), ("backend", NGINX), ("client", WRK), ("backend", NGINX + b"\r\n")],
        # A request read before, after one that ended the connection's keep-alive.
        [
            ("client", WRK),
            ("backend", NGINX),
            ("client", WRK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")),
            ("client", WRK),
        ],
        # A response head read before, answering a client that is not the ordinary case.
        [
            ("client", WRK),
            ("backend", NGINX),
            ("client", WRK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")),
            ("backend", NGINX),
        ],
        [
            ("client", WRK),
            ("backend", NGINX),
            ("client", b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"),
            ("backend", NGINX),
        ],
        [
            ("client", WRK),
            ("backend", NGINX),
            ("client", WRK.replace(b"\r\n\r\n", b"\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")),
            ("backend", NGINX),
        ],
        [("client", WRK), ("backend", NGINX), ("drain", b""), ("client", WRK), ("backend", NGINX)],
        [("client", WRK), ("backend", NGINX), ("client", WRK), ("drain", b""), ("backend", NGINX)],
        # The same head answering HEAD: it has no body.
        [("client", WRK), ("backend", NGINX), ("client", b"HEAD" + WRK[3:]), ("backend", NGINX)],
        # Heads framed by more than Content-Length alone; a request with a body.
        [("client", WRK), ("backend", NGINX.replace(b"200 OK", b"304 Not Modified"))] * 2,
        [("client", WRK), ("backend", NGINX.replace(b"200 OK", b"204 No Content"))] * 2,
        [("client", WRK), ("backend", NGINX.replace(b"Server", b"Upgrade: h2c\r\nServer"))] * 2,
        [
            ("client", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n"),
            ("backend", NGINX),
        ]
        * 2,
        [
            ("client", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("client", b"0\r\n\r\n"),
            ("backend", NGINX),
        ]
        * 2,
        [("client", b"GET / HTTP/1.1\r\nHost: a\r\nX-Canary: yes\r\n\r\n"), ("backend", NGINX)] * 2,
        [
            (
                "client",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
            ("backend", NGINX),
        ]
        * 2,
        [
            ("client", WRK),
            ("backend", NGINX.replace(b"Server", b"Transfer-Encoding: chunked\r\nServer")),
        ]
        * 2,
    ],
)
def test_memo_cases(steps: list[tuple[str, bytes]]) -> None:
    for table in TABLES:
        differences(steps, table)


HEADER_CASES = [
    b"Host: a\r\nHost: a",
    b"Host: a\r\nhost: b",
    b"X-A: 1\r\nHOST: a\r\nX-B: 2",
    b"Host: a\r\nConnection: keep-alive\r\nConnection: Keep-Alive",
    b"Host: a\r\nConnection: close",
    b"Host: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nX-B: 2",
    b"Host: a\r\nConnection: upgrade\r\nUpgrade: websocket",
    b"Host: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8",
    b"Host: a\r\nX-Forwarded-Proto: https\r\nProxy-Authorization: x\r\nKeep-Alive: 5",
    b"Host: a\r\nTE: trailers\r\nTrailer: X\r\nX-Zerodown-Flags: flag:a=b",
    b"Host: a\r\nX_Forwarded_For: 1.2.3.4",
    b"Host: a\r\nContent-Length: 0\r\nContent-Length: 0",
    b"Host: a\r\nX-Canary: yes\r\nCookie: zd=x\r\nCookie: y=z",
    b"X-A: 1",
]


@pytest.mark.parametrize("fields", HEADER_CASES)
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_header_cases(fields: bytes, version: bytes) -> None:
    """Heads with duplicates, hop-by-hop headers and look-alike names, whole and cut in two:
    the same bytes, closes and counts with the memo off, filling and filled (see differences)."""
    request = b"GET / HTTP/%s\r\n%s\r\n\r\n" % (version, fields)
    cut = request.find(b"\r\n", request.find(b"\r\n") + 2) + 1
    for reads in ([request], [request[:cut], request[cut:]]):
        steps = [("client", r) for r in reads] + [("backend", NGINX)]
        for table in TABLES:
            differences(steps * 2, table)


def test_memo_paused_and_resumed() -> None:
    """Heads that never repeat make a connection stop consulting the memo (upstream.MEMO_TRIES);
    it tries again later: the same bytes either way."""
    steps: list[tuple[str, bytes]] = []
    for i in range(80):
        unique = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
        steps += [("client", unique if i < 10 else WRK)]
        steps += [("backend", NGINX.replace(b"nginx", b"nginx/%d" % i) if i < 10 else NGINX)]
    differences(steps, "plain")


def test_memo_is_used() -> None:
    """The memo does fill from these heads (else the comparisons above would prove nothing)."""
    with memo("fresh"):
        run([("client", WRK), ("backend", NGINX)], "plain")
        assert WRK in dataplane._PARSED
        assert any(key.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx") for key in upstream._PARSED)
