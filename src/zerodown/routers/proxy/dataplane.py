"""The client side of the data plane: parse requests, pick a backend, stream both ways.

One `ClientConn` per client connection (asyncio Protocol, httptools parser) and one `Exchange` per
request. Bodies are streamed chunk by chunk with backpressure in both directions: when a socket's
write buffer fills, reading from the other side pauses until it drains.

A request is retried on another connection only when the backend cannot have acted on it: the
connect failed, or a reused keep-alive connection was closed before any response byte (the
backend closed it while idle). An idempotent request (GET, HEAD, OPTIONS) is also retried when a
fresh connection dies before any response byte. The body sent so far is kept (up to
REPLAY_LIMIT) so it can be sent again; beyond that the client gets a 502.

This module knows the router that owns its connections only through `RouterState` (server.Router
satisfies it), so it never imports server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import httptools

from zerodown.routers.proxy.events import log
from zerodown.routers.proxy.framing import (
    FRAMING,
    HEADERS_LIMIT,
    MAX_HEADERS,
    TARGET_LIMIT,
    Refused,
    content_length,
    is_chunked,
    origin_form,
    response_codings,
    valid_host,
)
from zerodown.routers.proxy.hold import RETRY_AFTER, Hold
from zerodown.routers.proxy.stats import (
    MAX_RELEASES,
    TunnelCounts,
    parse_flags_header,
)
from zerodown.routers.proxy.upstream import (
    CONNECTION,
    CONTENT_LENGTH,
    FLAGS,
    HEADER_KINDS,
    HOST,
    KEEP,
    LOOKALIKE,
    MEMO_PAUSE,
    MEMO_TRIES,
    NO_TOKENS,
    PAUSE_UPSTREAM,
    PLAIN_CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    XFF,
    BackendState,
    Parsed,
    UpstreamConn,
    header_kind,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from zerodown.routers.proxy.routing import CompiledPool, CompiledTable
    from zerodown.routers.proxy.stats import ReleaseCounters

REPLAY_LIMIT = 64 * 1024  # request body bytes kept for a retry
LINGER = 2.0  # seconds a refused connection keeps draining input before it closes
BUFFER_LIMIT = 256 * 1024  # request body bytes held while connecting before reading pauses

# Client reading is paused for any of these reasons; it resumes when none is left.
# PAUSE_UPSTREAM = 1 (upstream.py): the backend socket's write buffer is full
PAUSE_BUFFER = 2  # waiting for a backend connection with a full buffer
PAUSE_PIPELINE = 4  # a pipelined request waits for the one before it
PAUSE_STOP = 8  # nothing more will be read from this client
PAUSE_UPGRADE = 16  # an upgrade request waits for the backend's 101 (or its refusal)

# Response body framing towards the client.
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2, 3

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})

_REASONS = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


class RouterState(Protocol):
    """What the data plane needs of the router that owns its connections (server.Router): the
    clock, the live table, backends and counters, task spawning. Only a type: each use is the
    same attribute access or call on the router object as before, the hot path pays nothing."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def now(self) -> Callable[[], float]: ...
    @property
    def wall_offset(self) -> float: ...  # time.time() - now(), kept current
    @property
    def table(self) -> CompiledTable[BackendState]: ...
    @property
    def draining(self) -> bool: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def max_slow_heads(self) -> int: ...
    @property
    def slow_heads(self) -> dict[bytes, int]: ...  # client address -> connections in a head
    @property
    def releases(self) -> dict[str, ReleaseCounters]: ...
    @property
    def clients(self) -> set[ClientConn]: ...
    @property
    def hold(self) -> Hold: ...

    clients_peak: int  # the only attribute the data plane assigns

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    def counters(self, release: str) -> ReleaseCounters:
        """The counters of `release`, created on first use."""
        ...

    def forget(self, backend: BackendState) -> None:
        """Drop a backend that left the table once nothing is in flight to it."""
        ...

    def tunnel_counts(self, release: str) -> TunnelCounts:
        """The upgraded-connection counters of `release`, created on first use."""
        ...


def error_response(status: int, message: bytes, *, close: bool, retry_after: int = 0) -> bytes:
    body = message + b"\n"
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Retry-After: %d\r\n" % retry_after if retry_after else b"",
            b"Connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        ]
    )


# Connection tokens that name no header to drop, and headers Connection can never remove.
_NOT_DROPPED = frozenset({b"keep-alive", b"close", b"upgrade", b""}) | FRAMING


_TOKENS: dict[bytes, frozenset[bytes]] = {}


def _connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """Header names listed in Connection (besides keep-alive/close and framing): to be dropped."""
    if len(values) == 1:
        cached = _TOKENS.get(values[0])
        if cached is not None:
            return cached
    tokens = frozenset(t.strip().lower() for v in values for t in v.split(b",")) - _NOT_DROPPED
    if len(values) == 1 and len(values[0]) <= 256 and len(_TOKENS) < 1024:
        _TOKENS[values[0]] = tokens
    return tokens


def _without(head: list[bytes], named: frozenset[bytes], start: int) -> list[bytes]:
    """`head` (flat header lines from `start` on: name, ": ", value, CRLF, ...) less the headers
    that Connection names."""
    kept = head[:start]
    for i in range(start, len(head), 4):
        if head[i].lower() not in named:
            kept += head[i : i + 4]
    return kept


# Status lines by (status, reason): formatting one is dearer than a dict look-up, and backends
# use a handful. Bounded, since the reason comes from the backend.
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    if len(reason) <= 64 and len(_STATUS_LINES) < 256:
        _STATUS_LINES[status, reason] = line
    return line


# What the parser made of whole requests it read in one go, by their exact bytes: a read that
# repeats one (wrk's requests, a browser's polling) skips the parser's per-header callbacks. The
# parser is deterministic and starts from the same state (between messages of a keep-alive
# connection), so an entry is exactly what it would do again: never more lenient. Only requests
# with no body, no upgrade, no refusal are kept, with the route table's header names they were
# read for. Bounded in entries and key size; emptied when full.
PARSED_ENTRIES = 256
PARSED_KEY_LIMIT = 2048
_PARSED: dict[
    bytes,
    tuple[
        frozenset[bytes],
        bytes,
        bytes,
        bytes | None,
        list[bytes],
        dict[bytes, bytes],
        bytes,
        bool,
        bytes,
    ],
] = {}

# Host values already found valid: the check (a translate over the value) costs more than a set
# look-up, and a site sees few names. Bounded: the value comes from the client.
_GOOD_HOSTS: set[bytes] = set()

_NO_ROUTE_HEADERS: dict[bytes, bytes] = {}  # never written to: a request without route headers
_NOTHING_YET: list[bytes] = []
"""The body pieces buffered or kept for a replay before the first one: shared and never appended
to (the first piece gets a list of its own), so a request without a body allocates none."""


def _asks_upgrade(values: list[bytes]) -> bool:
    """Connection lists `upgrade` (RFC 9110 7.8: Upgrade counts only when Connection names it)."""
    return any(t.strip().lower() == b"upgrade" for v in values for t in v.split(b","))


class ClientConn(asyncio.Protocol):
    __slots__ = (
        "active",
        "at_start",
        "broken",
        "closed",
        "counted",
        "cur",
        "forwarded",
        "head_since",
        "https",
        "idle_since",
        "in_head",
        "interest",
        "misses",
        "out",
        "parser",
        "paused",
        "peer",
        "preview",
        "queue",
        "refusal",
        "router",
        "stopped",
        "to_start",
        "transport",
        "tunnel_to",
        "write_paused",
    )

    def __init__(self, router: RouterState, preview: bool, https: bool = False) -> None:
        self.router = router
        self.preview = preview
        self.https = https  # the client came over TLS: X-Forwarded-Proto says so
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # The parser is between messages, in a keep-alive connection: a read holding exactly one
        # whole request it has read before may skip it (parsed_before).
        self.at_start = True
        self.misses = 0  # reads in a row the memo did not have (see upstream.MEMO_TRIES)
        self.peer = b""
        self.forwarded = b""  # X-Forwarded-For and -Proto lines for a request that has no XFF
        self.interest: frozenset[bytes] = frozenset()  # route header names, for the current head
        self.cur: Exchange | None = None  # the request being parsed
        self.active: Exchange | None = None  # the request being answered
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting for `active`
        self.out: list[bytes] = []
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.broken = False
        self.stopped = False
        self.to_start = False
        self.idle_since = 0.0
        # Slow clients: `in_head` from the first byte of a request (or the connection's start)
        # until its headers are complete. `head_since` is when a head was first seen incomplete
        # after a read (0: none pending); the sweeper cuts it after the header timeout.
        # `counted`: this connection is one of its address's slow heads (router.slow_heads).
        self.in_head = True
        self.head_since = 0.0
        self.counted = False
        self.refusal: Refused | None = None  # why the connection is being refused
        # After a 101: the backend's transport, which gets every byte from now on, as it comes.
        self.tunnel_to: asyncio.Transport | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b"unknown"
        # The same two lines end every request head of this connection that has no XFF yet.
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (
            self.peer,
            b"https" if self.https else b"http",
        )
        router = self.router
        self.idle_since = self.head_since = router.now()
        clients = router.clients
        clients.add(self)
        if len(clients) > router.clients_peak:
            router.clients_peak = len(clients)

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            tunnel_to = self.tunnel_to
            if tunnel_to is not None:
                tunnel_to.write(data)
            return
        remember = False
        if self.at_start and self.active is None and len(data) <= PARSED_KEY_LIMIT:
            misses = self.misses
            if misses < MEMO_TRIES:
                ex = self.parsed_before(data)
                if ex is not None:
                    self.misses = 0
                    ex.start()
                    if self.out:
                        self.flush()
                    return
                self.misses = misses + 1
                remember = data[-4:] == b"\r\n\r\n"
            else:  # see upstream.MEMO_TRIES
                self.misses = misses + 1 if misses < MEMO_TRIES + MEMO_PAUSE else 0
        try:
            self.parser.feed_data(data)
            # Still between messages after the read: it held whole requests only, and the last
            # one keeps the connection open.
            if remember and self.at_start:
                self.remember(data)
        except httptools.HttpParserUpgrade as e:
            # Nothing after an upgrade request's head is HTTP. When we forward the Upgrade, the
            # bytes are the tunnel's once the backend answers 101; otherwise they are dropped.
            cur = self.cur
            if cur is not None and cur.upgrade is not None:
                cur.tunnel_pending = data[e.args[0] :]
                self.stopped = True
                self.in_head = False
                self.pause(PAUSE_UPGRADE)
            else:
                if cur is not None:
                    cur.keep_alive = False
                self.stop_reading()
        except httptools.HttpParserError as e:
            self.bad_request(e)
        if self.to_start:
            self.to_start = False
            ex = self.active
            if ex is not None:
                ex.start()
        if self.in_head and not self.stopped:
            self.head_pending()
        if self.out:
            self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_since:
            self.head_done()
        self.router.clients.discard(self)
        if self.active is not None:
            self.active.client_gone()
        for ex in self.queue:
            ex.client_gone()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.at_start = False
        self.cur = Exchange(self)
        self.in_head = True
        self.interest = self.router.table.interest  # once per head, not once per header

    def on_url(self, url: bytes) -> None:
        ex = self.cur
        assert ex is not None
        ex.url += url
        if len(ex.url) > TARGET_LIMIT:
            self.refuse(414, b"request target longer than %d bytes" % TARGET_LIMIT)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.cur
        assert ex is not None
        ex.head_size += len(name) + len(value)
        ex.fields += 1
        if ex.head_size > HEADERS_LIMIT:
            self.refuse(431, b"request header fields larger than %d bytes" % HEADERS_LIMIT)
        if ex.fields > MAX_HEADERS:
            self.refuse(431, b"more than %d request header fields" % MAX_HEADERS)
        if not self.in_head:
            return  # a trailer field: counted against the limits, never forwarded
        kind = HEADER_KINDS.get(name)
        if kind is None:
            kind = header_kind(name)
        if kind == KEEP or kind == FLAGS:  # noqa: SIM109 (no tuple built per header)
            if self.interest:
                lname = name.lower()
                if lname in self.interest:
                    self.route_header(ex, lname, value)
            # Kept flat, as the head will be written: head() joins them with no second pass.
            ex.headers += (name, b": ", value, b"\r\n")
        elif kind == CONTENT_LENGTH:
            if ex.content_length >= 0:
                self.refuse(400, b"more than one Content-Length header")
            try:
                ex.content_length = content_length(value)
            except Refused as r:
                self.refuse(r.status, r.message)
        elif kind == HOST:
            if ex.host is not None:
                self.refuse(400, b"more than one Host header")
            ex.host = value
        elif kind == XFF:
            ex.xff = value if not ex.xff else ex.xff + b", " + value
        elif kind == CONNECTION:
            if value not in PLAIN_CONNECTION:  # keep-alive/close: the parser acts on those
                ex.conn_tokens = [*ex.conn_tokens, value]
        elif kind == TRANSFER_ENCODING:
            ex.te = value if ex.te is None else ex.te + b"," + value
        elif kind == LOOKALIKE:
            self.refuse(400, b"ambiguous header name %s (underscore)" % name)
        elif kind == UPGRADE:
            ex.upgrade = value if ex.upgrade is None else ex.upgrade + b", " + value
        # DROP and XFP (we are the edge: we say which protocol the client used) go no further.

    @staticmethod
    def route_header(ex: Exchange, lname: bytes, value: bytes) -> None:
        """A header the route table looks at: kept by its lower-case name (repeats joined)."""
        if ex.route_headers is _NO_ROUTE_HEADERS:
            ex.route_headers = {}
        seen = ex.route_headers.get(lname)
        ex.route_headers[lname] = value if seen is None else seen + b"; " + value

    def on_headers_complete(self) -> None:
        ex = self.cur
        assert ex is not None
        self.in_head = False
        if self.head_since:
            self.head_done()
        parser = self.parser
        ex.method = method = parser.get_method()
        version = parser.get_http_version()
        ex.http11 = version == "1.1"
        try:
            if not ex.http11 and version != "1.0":
                raise Refused(505, b"HTTP/%s is not supported: use HTTP/1.1" % version.encode())
            host = ex.host
            if host is None:
                if ex.http11:
                    raise Refused(400, b"an HTTP/1.1 request needs a Host header")
            elif host not in _GOOD_HOSTS:
                if not valid_host(host):
                    raise Refused(400, b"invalid Host header")
                if len(host) <= 255 and len(_GOOD_HOSTS) < 256:
                    _GOOD_HOSTS.add(host)
            if ex.url[:1] != b"/" and method != b"CONNECT":
                ex.url, ex.host = origin_form(method, ex.url, host)
            # find, not `in`: bytes.__contains__ first tries the operand as an int and builds
            # (then drops) a TypeError, which costs more than the search itself.
            if ex.url.find(b"#") >= 0:
                raise Refused(400, b"a fragment (#) has no place in a request target")
            if ex.te is not None:
                ex.chunked = is_chunked(ex.te, http11=ex.http11, has_length=ex.content_length >= 0)
        except Refused as r:
            self.refuse(r.status, r.message)
        ex.keep_alive = parser.should_keep_alive() and not self.router.draining
        if ex.upgrade is not None and not (
            ex.http11 and method != b"CONNECT" and _asks_upgrade(ex.conn_tokens)
        ):
            ex.upgrade = None  # not a complete upgrade request: Upgrade is dropped, as hop-by-hop
        if ex.conn_tokens:
            named = _connection_tokens(ex.conn_tokens)
            if named:
                ex.headers = _without(ex.headers, named, 0)
        if self.active is None:
            self.active = ex
            self.to_start = True  # after this feed, so a small body goes out with the head
        else:
            self.queue.append(ex)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        self.cur.request_body(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        # After a message that ends the connection (Connection: close, HTTP/1.0) the parser
        # refuses any further byte: so must every later read, hence never the fast path again.
        self.at_start = self.parser.should_keep_alive()
        self.cur.request_end()  # type: ignore[union-attr]

    # the fast path: one whole request in one read

    def parsed_before(self, data: bytes) -> Exchange | None:
        """The request in `data` when the parser already read these very bytes as one whole
        request (see _PARSED): a new Exchange with what the callbacks set then, now active."""
        parsed = _PARSED.get(data)
        if parsed is None:
            return None
        interest, method, url, host, headers, route_headers, xff, http11, prefix = parsed
        if interest is not self.router.table.interest:
            return None  # route headers were picked for another table
        # What on_message_begin, on_url, on_header, on_headers_complete and on_message_complete
        # did, in the order that matters.
        self.cur = self.active = ex = Exchange(self)
        ex.method = method
        ex.url = url
        ex.host = host
        ex.headers = headers  # never changed in place: shared between the requests
        ex.route_headers = route_headers  # the same
        ex.xff = xff
        ex.http11 = http11
        ex.prefix = prefix
        ex.keep_alive = not self.router.draining
        ex.request_complete = True
        self.in_head = False
        if self.head_since:
            self.head_done()
        return ex

    def remember(self, data: bytes) -> None:
        """After the parser read `data`, from between messages, as exactly one whole request with
        no body that it keeps the connection open after: keep what it made of it (see _PARSED)."""
        ex = self.cur
        if (
            ex is None
            or ex is not self.active
            or self.queue
            or not ex.request_complete
            or ex.content_length >= 0
            or ex.te is not None
            or ex.upgrade is not None
            or ex.method == b"CONNECT"
            or self.refusal is not None
        ):
            return
        if len(_PARSED) >= PARSED_ENTRIES:
            _PARSED.clear()
        prefix = b""
        if ex.host is not None and not ex.xff:  # see Exchange.head
            prefix = b"".join(
                [ex.method, b" ", ex.url, b" HTTP/1.1\r\nHost: ", ex.host, b"\r\n", *ex.headers]
            )
        _PARSED[data] = (
            self.interest,
            ex.method,
            ex.url,
            ex.host,
            ex.headers,
            ex.route_headers,
            ex.xff,
            ex.http11,
            prefix,
        )

    # ours

    def flush(self) -> None:
        out = self.out
        if out:
            if not self.closed:
                # One write per batch: the head and a small body leave in one segment.
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]
            out.clear()

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]
        self.paused |= reason

    def unpause(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()  # type: ignore[union-attr]

    def stop_reading(self) -> None:
        self.stopped = True
        self.in_head = False
        if self.head_since:
            self.head_done()
        self.pause(PAUSE_STOP)

    # refusals

    def refuse(self, status: int, message: bytes) -> NoReturn:
        """Called from a parser callback: the parser stops and bad_request answers `status`."""
        self.refusal = Refused(status, message)
        raise self.refusal

    def bad_request(self, error: Exception) -> None:
        if self.refusal is None:
            reason = str(error)  # llhttp's words
            if reason.startswith("Pause on PRI"):  # the HTTP/2 prior-knowledge preface
                self.refusal = Refused(505, b"HTTP/2 is not supported: use HTTP/1.1")
            elif reason.startswith("Invalid HTTP version"):
                self.refusal = Refused(505, b"only HTTP/1.1 and HTTP/1.0 are supported")
            else:
                self.refusal = Refused(400, b"malformed HTTP request")
        self.stop_reading()
        cur = self.cur
        if cur is not None and cur in self.queue:
            self.queue.remove(cur)
        ex = self.active
        if ex is not None and ex.request_complete:
            self.broken = True  # answer 400 once the requests before it are answered
            return
        self.active = None
        if ex is not None:
            ex.client_gone()
        if ex is None or not ex.response_started:
            self.answer_refusal()
        else:
            self.close()

    def answer_refusal(self) -> None:
        """The refusal, then a lingering close: closing with unread input would send a reset that
        can destroy the answer before the client reads it, so read and drop input for a moment."""
        refusal = self.refusal
        assert refusal is not None
        self.out.append(error_response(refusal.status, refusal.message, close=True))
        self.flush()
        if self.closed:
            return
        self.stopped = True  # data_received drops whatever comes now
        self.paused = 0
        transport = self.transport
        assert transport is not None
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self.router.loop.call_later(LINGER, self.close)

    def exchange_done(self, ex: Exchange) -> None:
        if ex is not self.active:
            return
        self.active = None
        if self.closed:
            self.out.clear()
            return
        out = self.out
        if out:  # flush(), inlined: every request ends here
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]
            out.clear()
        if not ex.keep_alive:
            self.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.unpause(PAUSE_PIPELINE)
            self.active = nxt
            # Never inside the parser callback that ended `ex`: on the next loop turn the backend
            # connection `ex` used is back in the pool (its read held nothing after the response)
            # or closed (it did), so the pipelined request can reuse it, or not, safely.
            self.router.loop.call_soon(nxt.start_queued)
            return
        if self.broken:
            self.answer_refusal()
            return
        self.idle_since = ex.t_end
        if self.router.draining:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.transport.close()  # type: ignore[union-attr]

    # slow clients

    def head_pending(self) -> None:
        """A read ended inside a request head (or before the first one): the client is slow."""
        router = self.router
        if not self.head_since:
            self.head_since = router.now()
        if not self.counted and self.cur is not None:
            # The partial head is held in memory: bounded per address, in count and in size.
            self.counted = True
            slow = router.slow_heads.get(self.peer, 0) + 1
            router.slow_heads[self.peer] = slow
            if slow > router.max_slow_heads:
                self.cut(429, b"too many connections from your address are sending headers")

    def head_done(self) -> None:
        self.head_since = 0.0
        if self.counted:
            self.counted = False
            slow_heads = self.router.slow_heads
            left = slow_heads[self.peer] - 1
            if left:
                slow_heads[self.peer] = left
            else:
                del slow_heads[self.peer]

    def cut(self, status: int, message: bytes) -> None:
        """Stop reading a slow client: answer `status` if it had begun a request, then close."""
        began = self.in_head and self.cur is not None
        self.stop_reading()
        ex = self.active
        if ex is not None:
            ex.keep_alive = False  # the answer in progress is finished, then the connection ends
        elif began:
            self.refusal = Refused(status, message)
            self.answer_refusal()
        else:
            self.close()


class Exchange:
    """One request and its response."""

    __slots__ = (
        "backend",
        "buffered",
        "buffered_size",
        "chunked",
        "client",
        "conn_tokens",
        "content_length",
        "done",
        "fields",
        "flags",
        "got_bytes",
        "head_size",
        "headers",
        "host",
        "http11",
        "interim",
        "keep_alive",
        "method",
        "mode",
        "pool",
        "prefix",
        "release",
        "replay",
        "replay_size",
        "request_complete",
        "response_complete",
        "response_started",
        "route_headers",
        "router",
        "sent_any",
        "served_by",
        "set_cookie",
        "started",
        "status",
        "t0",
        "t_end",
        "te",
        "tried",
        "tunnel_pending",
        "tunneling",
        "until_close",
        "upgrade",
        "upstream",
        "url",
        "xff",
    )

    def __init__(self, client: ClientConn) -> None:
        self.client = client
        self.router = client.router
        self.url = b""
        self.method = b"GET"
        self.headers: list[bytes] = []  # flat: name, b": ", value, b"\r\n", ...
        self.prefix = b""  # the head up to X-Forwarded-For, when known already (see head)
        self.route_headers = _NO_ROUTE_HEADERS  # the route table's headers, by lower-case name
        self.conn_tokens = NO_TOKENS  # Connection values besides keep-alive and close
        self.xff = b""
        self.host: bytes | None = None
        self.content_length = -1  # as validated; -1: none
        self.te: bytes | None = None  # Transfer-Encoding value(s), joined
        self.head_size = 0
        self.fields = 0
        self.chunked = False
        self.http11 = True
        self.keep_alive = True
        self.started = False
        self.done = False
        self.t0 = 0.0
        self.t_end = 0.0
        self.pool: CompiledPool[BackendState] | None = None
        self.release: str | None = None  # the release the routing rules chose
        self.served_by: str | None = None  # the release of the backend that answered
        self.set_cookie = b""
        self.tried: tuple[BackendState, ...] = ()
        self.backend: BackendState | None = None
        self.upstream: UpstreamConn | None = None
        self.buffered = _NOTHING_YET  # body pieces that came while connecting
        self.buffered_size = 0
        self.replay: list[bytes] | None = _NOTHING_YET  # None: past REPLAY_LIMIT
        self.replay_size = 0
        self.request_complete = False
        self.sent_any = False
        self.got_bytes = False
        self.response_started = False
        self.response_complete = False
        self.interim = False
        self.status = 0
        self.mode = NO_BODY
        self.until_close = False
        self.flags = b""  # the response's X-Zerodown-Flags value(s), if any
        self.upgrade: bytes | None = None  # the Upgrade asked for, when it is forwarded
        self.tunnel_pending = b""  # client bytes that followed the upgrade request's head
        self.tunneling = False  # the backend answered 101: bytes flow both ways untouched

    # request side

    def start(self) -> None:
        self.started = True
        router = self.router
        self.t0 = now = router.now()
        if self.method == b"CONNECT":  # a reverse proxy opens no tunnels
            self.keep_alive = False
            self.fail(405, b"CONNECT is not supported")
            return
        hold = router.hold
        if hold.until:  # `zerodown hold`: queued, routed in order on release
            if not hold.admit(self):
                self.refuse_held(b"the router is holding traffic and its queue is full")
            return
        if hold.releasing:
            hold.releasing.append(self)  # behind the released ones: arrival order is kept
            return
        self.route(now)

    def route(self, now: float = 0.0) -> None:
        """Choose the pool and a backend (at once, or when a hold releases the request)."""
        router = self.router
        if not now:
            # A held request: the router's latency figures start here, so that a hold does not
            # read as a slow release (its client saw the hold time on top).
            self.t0 = now = router.now()
        table = router.table
        if self.client.preview:
            pool = table.preview
            self.release = table.table.preview
        elif table.plain:  # no matches, no stickiness: a weighted draw (one call fewer)
            pool = table.weighted()
        else:
            pool, new_key = table.choose(self.route_headers)
            if new_key is not None and table.sticky_cookie is not None:
                self.set_cookie = b"Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax\r\n" % (
                    table.sticky_cookie.encode("latin-1"),
                    new_key.encode("latin-1"),
                )
        if pool is None or not pool.backends:
            self.fail(503, b"no backend for this request")
            return
        self.pool = pool
        self.release = pool.release
        self.try_next(now, pool)

    def start_queued(self) -> None:
        if not self.done:  # the client may have left since exchange_done queued it
            self.start()

    def try_next(self, now: float = 0.0, pool: CompiledPool[BackendState] | None = None) -> None:
        """Connect to the next backend: same release first, then the other pools. `pool`: the
        release's pool, when the caller has it at hand."""
        router = self.router
        table = router.table
        now = now or router.now()
        release = self.release
        backend = None
        if pool is None and release is not None:
            pool = table.by_release.get(release)
        if pool is not None:
            backend = pool.pick(now, self.tried)
        if backend is None and not self.client.preview:
            for other in table.fallbacks(pool):
                backend = other.pick(now, self.tried)
                if backend is not None:
                    break
        if backend is None:
            self.fail(502 if self.tried else 503, b"no backend could be reached")
            return
        self.tried += (backend,)
        # use(backend), inlined: every request comes this way.
        self.backend = backend
        backend.inflight += 1
        conn = backend.take_idle()
        if conn is not None:
            self.attach(conn, True)
        else:
            router.spawn(self.connect(backend))

    def use(self, backend: BackendState, *, fresh: bool = False) -> None:
        self.backend = backend
        backend.inflight += 1
        conn = None if fresh else backend.take_idle()
        if conn is not None:
            self.attach(conn, True)
        else:
            self.router.spawn(self.connect(backend))

    async def connect(self, backend: BackendState) -> None:
        router = self.router
        try:
            conn: UpstreamConn | None
            async with asyncio.timeout(router.connect_timeout):
                _, conn = await router.loop.create_connection(
                    lambda: UpstreamConn(backend), backend.host, backend.port
                )
        except (TimeoutError, OSError):
            conn = None
        if conn is None or conn.closed or conn.transport.is_closing():  # type: ignore[union-attr]
            # Refused, timed out, or reset before we could use it (an instance dying with our
            # connection in its accept queue): nothing was sent, so try the next backend.
            backend.failed_until = router.now() + 1.0
            self.release_backend()
            if not self.done:
                self.try_next()
            return
        backend.failed_until = 0.0
        if self.done:
            # The client left while we connected (client_gone released the backend): keep the
            # connection for someone else.
            if backend.in_table and not router.draining:
                backend.put_idle(conn, router.now())
            else:
                conn.close()
            return
        try:
            self.attach(conn, False)
        except Exception as e:  # a bug: answer the client rather than leave it hanging
            log("router.bug", where="attach", error=repr(e))
            conn.close()
            self.upstream = None
            self.release_backend()
            self.fail(502, b"internal router error")

    def head(self) -> bytes:
        """The request head as the backend gets it: request line, Host and framing are ours."""
        host = self.host
        if host is None:  # HTTP/1.0 without Host
            host = self.backend.address.encode()  # type: ignore[union-attr]
        parts = [self.method, b" ", self.url, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        parts += self.headers
        client = self.client
        if self.xff:
            parts += (
                b"X-Forwarded-For: %s, %s\r\n" % (self.xff, client.peer),
                b"X-Forwarded-Proto: https\r\n" if client.https else b"X-Forwarded-Proto: http\r\n",
            )
        else:
            parts.append(client.forwarded)
        if self.upgrade is not None:
            parts += (b"Connection: upgrade\r\nUpgrade: ", self.upgrade, b"\r\n")
        if self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif self.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % self.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)

    def attach(self, conn: UpstreamConn, reused: bool) -> None:
        if self.sent_any and self.replay is None:
            # A retry, but the body grew past what we keep while we reconnected.
            conn.close()
            self.release_backend()
            self.fail(502, b"backend closed the connection; the request body cannot be resent")
            return
        self.upstream = conn
        conn.ex = self
        conn.reused = reused
        self.got_bytes = False
        backend = self.backend
        assert backend is not None
        backend.requests += 1
        self.served_by = backend.release
        if self.sent_any:
            body = self.replay or _NOTHING_YET  # everything received so far, for the retry
        else:
            body = self.buffered
            self.sent_any = True
        # A request the parser read before (ClientConn.parsed_before) with no body, upgrade or
        # X-Forwarded-For has all of head() but its last two parts ready (and skips its call).
        prefix = self.prefix
        head = b"".join((prefix, self.client.forwarded, b"\r\n")) if prefix else self.head()
        # The head and what came of the body go out in one write (one segment when small).
        conn.transport.write(b"".join([head, *body]) if body else head)  # type: ignore[union-attr]
        self.buffered = _NOTHING_YET
        self.buffered_size = 0
        client = self.client
        if client.paused & PAUSE_BUFFER:
            client.unpause(PAUSE_BUFFER)
        if client.write_paused:
            conn.pause_reading()

    def request_body(self, data: bytes) -> None:
        if self.response_complete:
            return
        piece = b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data
        self._send(piece)

    def request_end(self) -> None:
        self.request_complete = True
        if self.chunked and not self.response_complete:
            self._send(b"0\r\n\r\n")

    def _send(self, piece: bytes) -> None:
        replay = self.replay
        if replay is not None:
            if replay is _NOTHING_YET:
                replay = self.replay = []
            replay.append(piece)
            self.replay_size += len(piece)
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None
        if self.upstream is not None:
            self.upstream.transport.write(piece)  # type: ignore[union-attr]
        else:
            if self.buffered is _NOTHING_YET:
                self.buffered = []
            self.buffered.append(piece)
            self.buffered_size += len(piece)
            if self.buffered_size > BUFFER_LIMIT:
                self.client.pause(PAUSE_BUFFER)

    # response side

    def response_head(self, conn: UpstreamConn) -> None:
        if conn is not self.upstream:
            return
        status = conn.status
        if status < 200 or status > 599:
            if status < 100 or status > 599:  # llhttp takes any three digits
                self.upstream_broken(conn, b"backend sent status %d, not 100-599" % status)
                return
            if status == 101:
                self.switch_protocols(conn)
                return
            self.interim = True
            if self.http11:
                self.client.out.append(b"HTTP/1.1 %d %s\r\n\r\n" % (status, conn.reason))
            return
        self.status = status
        if self.upgrade is not None:
            self.keep_alive = False  # what the client sent after its upgrade request is not HTTP
        te = conn.te
        codings = b""  # transfer codings besides chunked: forwarded for the client to undo
        if te is None or te == b"chunked":
            body_chunked = te is not None
        else:
            try:
                codings, body_chunked = response_codings(te)
            except Refused as r:
                self.upstream_broken(conn, r.message)
                return
        no_body = self.method == b"HEAD" or status == 204 or status == 304
        if no_body:
            mode = NO_BODY
        elif te is None and conn.content_length is not None:
            mode = LENGTH
        elif self.http11:
            mode = CHUNKED
        elif codings:  # RFC 9112 6.1: no Transfer-Encoding towards an HTTP/1.0 client
            self.upstream_broken(conn, b"backend used a transfer coding; the client is HTTP/1.0")
            return
        else:
            mode = UNTIL_CLOSE
            self.keep_alive = False
        self.mode = mode
        self.until_close = not no_body and conn.content_length is None and not body_chunked
        if self.router.draining:
            self.keep_alive = False
        # The backend's header lines, already flat after a slot for the status line (upstream.py):
        # the head is completed in place and joined once.
        parts = conn.head
        if conn.conn_tokens:
            named = _connection_tokens(conn.conn_tokens)
            if named:
                parts = _without(parts, named, 1)
        parts[0] = _STATUS_LINES.get((status, conn.reason)) or status_line(status, conn.reason)
        self.flags = conn.flags  # counted per flag variant when the exchange ends
        length = conn.content_length
        # As the parser validated it; never on a 204 (RFC 9110 8.6), nor Transfer-Encoding (RFC
        # 9112 6.1). A HEAD or 304 answer keeps the framing the full response would have had.
        if length is not None and mode != CHUNKED and status != 204:
            parts += (b"Content-Length: ", length.strip(b" \t"), b"\r\n")
        if mode == CHUNKED or (te is not None and no_body and status != 204 and self.http11):
            parts.append(
                b"Transfer-Encoding: %s, chunked\r\n" % codings
                if codings
                else b"Transfer-Encoding: chunked\r\n"
            )
        if self.set_cookie:
            parts.append(self.set_cookie)
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n")
        elif not self.http11:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.client.out.append(b"".join(parts))
        self.response_started = True
        if self.method == b"HEAD":
            # httptools cannot be told the request was HEAD: it would wait for the body that
            # Content-Length announces. The response is complete; start a fresh parser.
            conn.reset_parser = True
            self.response_end(conn)

    def known_head(self, conn: UpstreamConn, parsed: Parsed) -> None:
        """response_head for a head the parser read before (upstream.py): in the ordinary case
        (HTTP/1.1 keep-alive client, no cookie to set, no upgrade asked, not draining) the head
        it writes depends only on the backend's, so it is kept with it and written as is."""
        ordinary = (
            self.http11
            and self.keep_alive
            and not self.set_cookie
            and self.upgrade is None
            and not self.router.draining
            and conn is self.upstream
        )
        sent = parsed.sent
        if ordinary and sent is not None:
            # What response_head sets for a head framed by Content-Length alone (see Parsed).
            self.status = parsed.status
            self.mode = LENGTH
            self.until_close = False
            self.flags = parsed.flags
            self.response_started = True
            self.client.out.append(sent)
            return
        conn.head = conn.head.copy()  # response_head completes it in place
        self.response_head(conn)
        if ordinary and self.response_started and self.mode == LENGTH:
            parsed.sent = self.client.out[-1]  # the head response_head has just written

    def switch_protocols(self, conn: UpstreamConn) -> None:
        """The backend answered 101: forward it, then carry bytes both ways untouched until one
        side closes (or the router closes the tunnel: a deploy's `drain.upgraded`)."""
        client = self.client
        if (
            self.upgrade is None
            or conn.upgrade is None
            or not self.request_complete
            or not client.paused & PAUSE_UPGRADE  # the client's parser stopped at this head
            or not _asks_upgrade(conn.conn_tokens)
        ):
            self.upstream_broken(conn, b"backend switched protocols without an upgrade asked for")
            return
        backend = self.backend
        assert backend is not None
        self.interim = True  # the parser ends the 101 message next: not the end of the exchange
        self.status = 101
        self.tunneling = True
        self.response_started = True
        parts = _without(conn.head, _connection_tokens(conn.conn_tokens), 1)
        parts[0] = b"HTTP/1.1 101 %s\r\n" % conn.reason
        if self.set_cookie:
            parts.append(self.set_cookie)
        parts += (b"Connection: upgrade\r\nUpgrade: ", conn.upgrade, b"\r\n\r\n")
        client.out.append(b"".join(parts))  # flushed before any tunnel byte (upstream.py)
        conn.tunnel_to = client.transport
        client.tunnel_to = conn.transport
        if self.tunnel_pending:
            conn.transport.write(self.tunnel_pending)  # type: ignore[union-attr]
            self.tunnel_pending = b""
        backend.tunnels.add(self)
        router = self.router
        release = self.served_by or backend.release
        router.counters(release).record(
            101, router.now() - self.t0, time.time(), transport_error=False
        )
        counts = router.tunnel_counts(release)
        counts.opened += 1
        counts.open += 1
        client.unpause(PAUSE_UPGRADE)

    def end_tunnel(self, side: str) -> None:
        """Close both ends of the tunnel; `side` closed first (client, backend or router)."""
        if not self.tunneling:
            return
        self.tunneling = False
        self.done = True
        backend = self.backend
        if backend is not None:
            backend.tunnels.discard(self)
        counts = self.router.tunnel_counts(self.served_by or "")
        counts.open -= 1
        counts.closed[side] += 1
        conn = self.upstream
        self.upstream = None
        self.release_backend()
        client = self.client
        client.tunnel_to = None
        if conn is not None:
            conn.tunnel_to = None
            conn.close()  # what was written is still sent: close() flushes the buffer
        client.flush()
        client.close()

    def response_body(self, data: bytes) -> None:
        mode = self.mode
        if mode in (LENGTH, UNTIL_CLOSE):
            self.client.out.append(data)
        elif mode == CHUNKED:
            self.client.out += (b"%x\r\n" % len(data), data, b"\r\n")

    def response_end(self, conn: UpstreamConn) -> None:
        if conn is not self.upstream or self.done:
            return
        if self.interim:
            self.interim = False
            return
        if not self.response_started:
            return
        if self.mode == CHUNKED:
            self.client.out.append(b"0\r\n\r\n")
        self.response_complete = True
        self.upstream = None
        conn.ex = None
        router = self.router
        backend = self.backend
        if backend is not None:  # release_backend(), inlined: every request ends here
            self.backend = None
            backend.inflight -= 1
            if backend.inflight == 0 and not backend.in_table:
                router.forget(backend)
        now = router.now()
        if conn.read_paused:
            conn.resume_reading()
        if (
            conn.keep_alive
            and self.request_complete
            and not conn.closed
            and backend is not None
            and backend.in_table
            and not router.draining
        ):
            conn.release(now)  # pooled by conn.data_received once the rest of its read is clean
        else:
            conn.close()
        client = self.client
        if client.paused & PAUSE_UPSTREAM:
            client.unpause(PAUSE_UPSTREAM)
        if not self.request_complete:
            self.keep_alive = False  # the client is still sending a body nobody will read
        self.finish(self.status, False, now)

    def upstream_lost(self, conn: UpstreamConn) -> None:
        """The backend connection closed while this exchange was using it."""
        if conn is not self.upstream or self.done:
            return
        if self.tunneling:
            self.end_tunnel("backend")
            return
        self.upstream = None
        self.client.unpause(PAUSE_UPSTREAM)
        if self.response_started:
            if self.until_close:
                self.upstream = conn
                self.response_end(conn)
            else:
                self.release_backend()
                self.abort_client()
            return
        self.release_backend()
        if not self.got_bytes and (conn.reused or self.method in IDEMPOTENT):
            if self.replay is None:
                self.fail(502, b"backend closed the connection; the request body cannot be resent")
            elif conn.reused and conn.backend.in_table:
                self.use(conn.backend, fresh=True)  # it closed while idle: try a fresh one
            else:
                self.try_next()
            return
        self.fail(502, b"backend closed the connection before answering")

    def upstream_broken(
        self, conn: UpstreamConn, why: bytes = b"backend sent an invalid response"
    ) -> None:
        """The backend sent something that is not an HTTP/1.1 response we can forward: its
        connection is closed, never reused."""
        if conn is not self.upstream:
            return
        self.upstream = None
        conn.close()
        self.release_backend()
        if self.response_started:
            self.abort_client()
        else:
            self.fail(502, why)

    # ending

    def release_backend(self, backend: BackendState | None = None) -> None:
        backend = backend or self.backend
        if backend is None:
            return
        if backend is self.backend:
            self.backend = None
        backend.inflight -= 1
        if backend.inflight == 0 and not backend.in_table:
            self.router.forget(backend)

    def fail(self, status: int, message: bytes, retry_after: int = 0) -> None:
        """Answer from the router itself (no backend answered)."""
        if self.done:
            return
        if not self.request_complete:
            self.keep_alive = False
        self.client.out.append(
            error_response(status, message, close=not self.keep_alive, retry_after=retry_after)
        )
        self.response_complete = True
        self.finish(status, transport_error=True)

    def refuse_held(self, why: bytes) -> None:
        """A request the hold could not keep (queue full, or its time ran out): 503 and when to
        try again."""
        self.fail(503, why, retry_after=RETRY_AFTER)
        self.client.flush()  # outside a read of this client: nothing else flushes it

    def abort_client(self) -> None:
        """The response broke after it started: the client must see a truncated response."""
        self.client.flush()
        if self.client.transport is not None and not self.client.closed:
            self.client.transport.abort()
        self.keep_alive = False
        self.finish(self.status or 502, transport_error=True)

    def finish(self, status: int, transport_error: bool, now: float = 0.0) -> None:
        self.done = True
        router = self.router
        self.t_end = now = now or router.now()
        release = self.served_by or self.release
        if release is not None:
            counters = router.releases.get(release) or router.counters(release)
            wall = now + router.wall_offset  # the sample's wall time, without a second clock read
            counters.record(status, now - self.t0, wall, transport_error)
            if self.flags:
                self.record_flags(status, now - self.t0, wall, transport_error)
        self.client.exchange_done(self)

    def record_flags(self, status: int, latency: float, wall: float, transport_error: bool) -> None:
        """Count the response once more per flag variant it names (`flag:<key>=<variant>`)."""
        router = self.router
        releases = router.releases
        for name in parse_flags_header(self.flags):
            counters = releases.get(name)
            if counters is None:
                if len(releases) >= MAX_RELEASES:
                    continue
                counters = router.counters(name)
            counters.record(status, latency, wall, transport_error=transport_error)

    def client_gone(self) -> None:
        """The client closed its connection: stop work for it."""
        if self.done:
            return
        if self.tunneling:
            self.end_tunnel("client")
            return
        self.done = True
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.close()
        self.release_backend()
        if self.response_started and self.served_by is not None:
            router = self.router
            latency, wall = router.now() - self.t0, time.time()
            router.counters(self.served_by).record(
                self.status, latency, wall, transport_error=False
            )
            if self.flags:
                self.record_flags(self.status, latency, wall, False)
