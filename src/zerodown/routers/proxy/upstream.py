"""Connections to backends: one pool of idle keep-alive connections per backend address.

An idle pooled connection must stay silent: any byte a backend sends while no exchange uses the
connection (or after the response it owed, in the same read) means the two sides no longer agree
on where messages start, so the connection is closed and never handed out again.

A connection whose response ends inside a read is put back in the pool only after the parser has
consumed the whole read and found no byte after that response (`to_pool`): while the parser
callbacks run, the exchange that ends can start another (a pipelined request), and that one must
never be handed the connection whose stray bytes are still being parsed.

This module knows the data plane only through `Receiver` (what a connection hands its response
to: dataplane.Exchange satisfies it), so it never imports dataplane.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

import httptools

from zerodown.routers.proxy.framing import lookalike
from zerodown.routers.proxy.stats import FLAGS_HEADER

# Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)


# What to do with a header, by its name as received. The cache keeps the hot path free of
# lower-casing and string tests for the few dozen names real traffic uses; only short names are
# cached, so odd clients can neither grow it without limit nor park large keys in it.
# UPGRADE sorts below XFF: a response keeps the kinds from XFF up, never Upgrade (see on_header).
# FLAGS (X-Zerodown-Flags) is an ordinary header in a request; a response's is also counted.
(
    KEEP,
    DROP,
    CONNECTION,
    TRANSFER_ENCODING,
    CONTENT_LENGTH,
    UPGRADE,
    XFF,
    XFP,
    HOST,
    LOOKALIKE,
    FLAGS,
) = range(11)
HEADER_KINDS: dict[bytes, int] = {}

# Connection values that name no header to drop and ask for no upgrade: the parser already acts
# on keep-alive and close, so the usual spellings are not kept for the token checks at all (a
# backend such as nginx sends `Connection: keep-alive` on every response).
PLAIN_CONNECTION = frozenset({b"keep-alive", b"Keep-Alive", b"close", b"Close"})


def header_kind(name: bytes) -> int:
    lname = name.lower()
    if lname == b"connection":
        kind = CONNECTION
    elif lname == b"transfer-encoding":
        kind = TRANSFER_ENCODING
    elif lname == b"upgrade":
        kind = UPGRADE
    elif lname in HOP_BY_HOP or lname.startswith(b"proxy-"):
        kind = DROP
    elif lname == b"content-length":
        kind = CONTENT_LENGTH
    elif lname == b"x-forwarded-for":
        kind = XFF
    elif lname == b"x-forwarded-proto":
        kind = XFP
    elif lname == b"host":
        kind = HOST
    elif lname == FLAGS_HEADER:
        kind = FLAGS
    elif lookalike(lname):
        kind = LOOKALIKE
    else:
        kind = KEEP
    if len(name) <= 64 and len(HEADER_KINDS) < 512:
        HEADER_KINDS[name] = kind
    return kind


NO_TOKENS: list[bytes] = []
"""The Connection values of a message that has none: shared, never appended to (a message's first
value gets a list of its own), which spares a list per message."""

PAUSE_UPSTREAM = 1
"""The reason a client stops being read while the backend socket's write buffer is full (one bit
of the data plane's pause reasons)."""


class ClientSide(Protocol):
    """The client connection an exchange answers: flushed after each read of the response,
    paused while the backend cannot take more of the request body."""

    out: list[bytes]  # bytes waiting for flush()

    def flush(self) -> None: ...
    def pause(self, reason: int) -> None: ...
    def unpause(self, reason: int) -> None: ...


class TunnelEnd(Protocol):
    """An upgraded exchange (a WebSocket, say) open on a backend: the router can close it."""

    def end_tunnel(self, side: str) -> None: ...


class Receiver(Protocol):
    """The exchange a connection carries (dataplane.Exchange): where its response goes. Only a
    type: each call is the same direct method call as on the exchange itself."""

    got_bytes: bool  # set at the first byte of the response
    method: bytes  # the request's: the answer to HEAD has no body

    @property
    def client(self) -> ClientSide: ...

    def response_head(self, conn: UpstreamConn) -> None: ...
    def known_head(self, conn: UpstreamConn, parsed: Parsed) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_end(self, conn: UpstreamConn) -> None: ...
    def upstream_lost(self, conn: UpstreamConn) -> None: ...
    def upstream_broken(self, conn: UpstreamConn) -> None: ...


# What the parser made of response heads it read (from between messages), by their exact bytes:
# a head it has read before (a backend's answers differ little; nginx's only by Date, once a
# second) skips the parser's per-header callbacks and its body is forwarded by count. The parser
# is deterministic, so an entry is exactly what it did with those bytes: never more lenient. Only
# heads framed by Content-Length alone (no Transfer-Encoding, no Upgrade, status 200-599 but 204
# and 304) are kept, and never used for the answer to HEAD. Bounded; emptied when full.
PARSED_ENTRIES = 256
PARSED_KEY_LIMIT = 2048
# Where heads never repeat (a request id in every response, say) the memo only costs: a look-up,
# a copy of the key, an entry that is never used. A connection whose last MEMO_TRIES reads all
# missed stops using it for MEMO_PAUSE reads, then tries again.
MEMO_TRIES = 4
MEMO_PAUSE = 64


class Parsed:
    """What the parser's callbacks set for one response head (see UpstreamConn), and its body
    size; `sent`: the head as the exchange wrote it to a client in the ordinary case (set by the
    exchange: it depends only on this head then)."""

    __slots__ = (
        "conn_tokens",
        "content_length",
        "flags",
        "head",
        "keep_alive",
        "reason",
        "sent",
        "size",
        "status",
    )

    def __init__(self, conn: UpstreamConn, size: int) -> None:
        self.status = conn.status
        self.reason = conn.reason
        self.head = conn.head.copy()  # before response_head completes the connection's in place
        self.conn_tokens = conn.conn_tokens
        self.flags = conn.flags
        self.content_length = conn.content_length
        self.keep_alive = conn.keep_alive
        self.size = size
        self.sent: bytes | None = None


_PARSED: dict[bytes, Parsed] = {}


class BackendState:
    """Live state of one backend address: idle connections, in-flight and request counts."""

    __slots__ = (
        "address",
        "failed_until",
        "host",
        "idle",
        "in_table",
        "inflight",
        "port",
        "release",
        "requests",
        "tunnels",
    )

    def __init__(self, address: str, host: str, port: int, release: str) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.release = release
        self.idle: deque[UpstreamConn] = deque()
        self.inflight = 0
        self.requests = 0
        self.in_table = True
        self.failed_until = 0.0  # loop time until which a failed connect puts it last
        # Upgraded connections open on this backend (each also counts in `inflight`).
        self.tunnels: set[TunnelEnd] = set()

    def take_idle(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()  # most recently used: the least likely to have been closed
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    def put_idle(self, conn: UpstreamConn, now: float) -> None:
        """Pool a connection that is not in a read (see `UpstreamConn.release` for one that is)."""
        conn.idle_since = now
        self.idle.append(conn)

    def close_idle(self, older_than: float | None = None) -> None:
        idle = self.idle
        while idle and (older_than is None or idle[0].idle_since < older_than):
            idle.popleft().close()


class UpstreamConn(asyncio.Protocol):
    """One HTTP/1.1 connection to a backend; carries one exchange at a time."""

    __slots__ = (
        "at_start",
        "backend",
        "closed",
        "conn_tokens",
        "content_length",
        "ex",
        "flags",
        "head",
        "idle_since",
        "keep_alive",
        "key",
        "misses",
        "parser",
        "pending",
        "read_paused",
        "reason",
        "remaining",
        "reset_parser",
        "reused",
        "status",
        "stray",
        "te",
        "to_pool",
        "transport",
        "tunnel_to",
        "upgrade",
    )

    def __init__(self, backend: BackendState) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # The parser is between messages: a read that begins with a whole response head may
        # skip it (parsed_before), and then `remaining` body bytes are forwarded by count.
        self.at_start = True
        self.remaining = 0
        self.misses = 0  # reads in a row whose head the memo did not have (see MEMO_TRIES)
        self.key: bytes | None = None  # a response head to remember once the parser has read it
        self.pending: tuple[bytes, Parsed] | None = None  # what it made of it, not kept yet
        self.ex: Receiver | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.read_paused = False
        self.reset_parser = False
        self.stray = False  # the backend sent bytes no exchange asked for
        self.to_pool = False  # released during this read: pooled once the read proves clean
        # After a 101: the client's transport, which gets every byte from now on, as it comes.
        self.tunnel_to: asyncio.Transport | None = None
        self._new_message()

    def _new_message(self) -> None:
        self.status = 0
        self.reason = b""
        # The forwarded header lines, flat (name, ": ", value, CRLF, ...) after a slot for the
        # status line: the head goes to the client in one join, with no second pass over them.
        self.head: list[bytes] = [b""]
        self.conn_tokens: list[bytes] = NO_TOKENS  # replaced by a list of its own when one comes
        self.flags = b""  # X-Zerodown-Flags value(s)
        self.content_length: bytes | None = None
        self.te: bytes | None = None  # Transfer-Encoding value(s), joined; judged by response_head
        self.upgrade: bytes | None = None  # the Upgrade value; forwarded only with a 101
        self.keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        tunnel_to = self.tunnel_to
        if tunnel_to is not None:
            tunnel_to.write(data)
            return
        ex = self.ex
        if ex is None:
            # An idle connection must stay silent; anything else means it cannot be reused.
            self.close()
            return
        ex.got_bytes = True
        client = ex.client
        if self.remaining:
            data = self.body_by_count(ex, data)
        elif self.at_start:
            misses = self.misses
            if misses < MEMO_TRIES:
                rest = self.parsed_before(ex, data)
                if rest is not None:
                    data = rest
            else:  # see MEMO_TRIES
                self.misses = misses + 1 if misses < MEMO_TRIES + MEMO_PAUSE else 0
        if data:
            self.feed(client, data)
            self.key = None
        if self.stray:
            self.to_pool = False
            self.close()  # taken out of the idle pool by connection_lost
        else:
            if self.reset_parser:
                self.reset_parser = False
                self.parser = httptools.HttpResponseParser(self)
                self.at_start = True
                self.pending = None
            if self.to_pool:
                self.to_pool = False
                self.backend.idle.append(self)  # idle_since was set when it was released
        if client.out:  # often flushed already, by the exchange that ended in this read
            client.flush()

    def feed(self, client: ClientSide, data: bytes) -> None:
        """The parser's path: every response the fast path does not take, and whatever follows
        a response that was read by count."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            # A 101 the exchange accepted (response_head set tunnel_to): the rest is the tunnel's.
            if self.tunnel_to is not None:
                client.flush()  # the 101 head first, then what the backend sent after it
                rest = data[e.args[0] :]
                if rest:
                    self.tunnel_to.write(rest)
            elif self.ex is not None:
                self.ex.upstream_broken(self)
            else:
                self.stray = True
        except httptools.HttpParserError:
            if self.ex is not None:
                self.ex.upstream_broken(self)
            else:
                self.stray = True

    # the fast path: a whole response head in one read, its body by count

    def parsed_before(self, ex: Receiver, data: bytes) -> bytes | None:
        """Read the response `data` begins with when the parser already read its very head (see
        _PARSED), framed by Content-Length: the same fields and calls on the exchange as the
        callbacks, then the body by count; returns what follows the response in `data`, for the
        parser. None (nothing changed) otherwise: the parser reads `data`, and the head is
        remembered for next time when it qualifies."""
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or end > PARSED_KEY_LIMIT or ex.method == b"HEAD":
            return None
        key = data[:end] if end < len(data) else data
        parsed = _PARSED.get(key)
        if parsed is None:
            self.misses += 1
            if key[:5] == b"HTTP/":  # no empty line before it: the parser's message starts here
                self.key = key
            return None
        self.misses = 0
        self.status = parsed.status
        self.reason = parsed.reason
        self.head = parsed.head  # copied by the exchange if it needs to complete it in place
        self.conn_tokens = parsed.conn_tokens
        self.flags = parsed.flags
        self.content_length = parsed.content_length
        self.keep_alive = parsed.keep_alive
        self.te = None
        self.upgrade = None
        ex.known_head(self, parsed)
        if self.closed:  # the exchange refused the head (and closed this connection)
            return b""
        rest = data[end:]
        size = parsed.size
        if len(rest) == size:  # the common case, without body_by_count's call
            if size:
                ex.response_body(rest)
            ex.response_end(self)
            return b""
        if size:
            self.remaining = size
            return self.body_by_count(ex, rest) if rest else b""
        ex.response_end(self)
        return rest

    def remember(self, key: bytes) -> None:
        """The parser has read the head `key` (on_headers_complete): what it made of it, to keep
        once the parser has gone on to the body (on_body, on_message_complete: nothing after the
        head made it fail), when the response is framed by Content-Length alone and its head has
        no bare CR or LF (so it ends where the key does)."""
        length = self.content_length
        status = self.status
        if (
            length is None
            or self.te is not None
            or self.upgrade is not None
            or status < 200
            or status > 599
            or status == 204
            or status == 304
        ):
            return
        digits = length.strip(b" \t")
        crlfs = key.count(b"\r\n")
        if not digits.isdigit() or key.count(b"\r") != crlfs or key.count(b"\n") != crlfs:
            return
        self.pending = key, Parsed(self, int(digits))

    def commit(self) -> None:
        if self.pending is not None:
            if len(_PARSED) >= PARSED_ENTRIES:
                _PARSED.clear()
            key, parsed = self.pending
            _PARSED[key] = parsed
            self.pending = None

    def body_by_count(self, ex: Receiver, data: bytes) -> bytes:
        """Forward the rest of a body whose head parsed_before read; what follows it in this
        read (returned) goes to the parser, which is between messages."""
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            ex.response_body(data)
            return b""
        self.remaining = 0
        ex.response_body(data[:remaining] if len(data) > remaining else data)
        ex.response_end(self)
        return data[remaining:]

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_lost(self)
        else:
            with contextlib.suppress(ValueError):
                self.backend.idle.remove(self)

    def pause_writing(self) -> None:
        if self.ex is not None:
            self.ex.client.pause(PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        if self.ex is not None:
            self.ex.client.unpause(PAUSE_UPSTREAM)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.at_start = False
        self.pending = None
        if self.ex is None:
            self.stray = True  # a second response after the one we were owed
        self._new_message()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = HEADER_KINDS.get(name)
        if kind is None:
            kind = header_kind(name)
        if kind == KEEP:
            self.head += (name, b": ", value, b"\r\n")
        elif kind == CONTENT_LENGTH:
            self.content_length = value  # written by response_head as the framing it uses
        elif kind == CONNECTION:
            if value not in PLAIN_CONNECTION:
                self.conn_tokens = [*self.conn_tokens, value]
        elif kind >= XFF:
            if kind == FLAGS:  # counted per flag variant when the exchange ends
                self.flags = value if not self.flags else self.flags + b"," + value
            self.head += (name, b": ", value, b"\r\n")
        elif kind == TRANSFER_ENCODING:
            self.te = value if self.te is None else self.te + b"," + value
        elif kind == UPGRADE:
            self.upgrade = value if self.upgrade is None else self.upgrade + b", " + value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.key is not None:  # the first head of a read that began between messages
            self.remember(self.key)
            self.key = None
        if self.ex is not None:
            self.ex.response_head(self)

    def on_body(self, body: bytes) -> None:
        if self.pending is not None:
            self.commit()
        if self.ex is not None:
            self.ex.response_body(body)
        else:
            self.stray = True  # body bytes after a HEAD response, say

    def on_message_complete(self) -> None:
        self.at_start = True
        if self.pending is not None:
            self.commit()
        if self.ex is not None:
            self.ex.response_end(self)

    # ours

    # uvloop raises on a transport whose connection is lost: check `closed` first.

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def release(self, now: float) -> None:
        """The response ended inside this connection's read (a parser callback): pool it when the
        read is over, unless a byte follows the response."""
        self.ex = None
        self.idle_since = now
        self.to_pool = True

    def close(self) -> None:
        self.closed = True
        self.ex = None
        if self.transport is not None:
            self.transport.close()
