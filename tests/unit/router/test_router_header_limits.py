"""The request header limits (431) wherever the head's reads end.

The data plane counts an ordinary header's bytes only once they can matter (a head that began in
a read of at most HEADERS_LIMIT bytes cannot exceed it before the read ends: dataplane.ClientConn
on_header and count_lines). These tests play heads just under and just over each limit, in one
read and split across reads at many points (so the head leaves the short path at different
headers), with trailers after a chunked body, and require the 431 exactly when the limit is
exceeded, as the definition says: more than MAX_HEADERS fields (head and trailers together), or
more than HEADERS_LIMIT bytes of names and values.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.routers.proxy.dataplane import ClientConn
from zerodown.routers.proxy.framing import HEADERS_LIMIT, MAX_HEADERS
from zerodown.routers.proxy.server import Router


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.7", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def answer(reads: list[bytes]) -> bytes:
    """What the router writes to a client that sends `reads` (no backend ever answers)."""

    async def play() -> bytes:
        router = Router(asyncio.get_running_loop())

        def spawn(coro: Any) -> None:  # a connect: never completes here
            coro.close()

        router.spawn = spawn  # type: ignore[method-assign]
        router.install(RouteTable(1, (Pool("stable", 100, (Backend("127.0.0.1:9", "b1"),)),)))
        client = ClientConn(router, False)
        t = FakeTransport()
        client.connection_made(t)  # type: ignore[arg-type]
        for data in reads:
            client.data_received(data)
        return bytes(t.written)

    return asyncio.run(play())


def refused(reads: list[bytes]) -> bool:
    out = answer(reads)
    assert out == b"" or out.startswith(b"HTTP/1.1 431 "), out[:80]
    return out.startswith(b"HTTP/1.1 431 ")


def splits(data: bytes, pieces: int) -> list[list[bytes]]:
    """`data` whole, and cut in two at `pieces` places spread over it."""
    cuts = [len(data) * k // (pieces + 1) for k in range(1, pieces + 1)]
    return [[data]] + [[data[:c], data[c:]] for c in cuts]


def head(fields: list[tuple[bytes, bytes]], start: bytes = b"GET / HTTP/1.1\r\n") -> bytes:
    return start + b"".join(b"%s: %s\r\n" % f for f in fields) + b"\r\n"


def sized(total: int, count: int) -> list[tuple[bytes, bytes]]:
    """`count` fields (Host and Connection among them) whose names and values add up to
    `total` bytes."""
    fields = [(b"Host", b"example.com"), (b"Connection", b"keep-alive")]
    fields += [(b"X-F%03d" % i, b"") for i in range(count - 2)]
    left = total - sum(len(n) + len(v) for n, v in fields)
    assert left >= 0
    per, extra = divmod(left, count - 2)
    for i in range(2, count):
        fields[i] = (fields[i][0], b"v" * (per + (1 if i - 2 < extra else 0)))
    return fields


@pytest.mark.parametrize("count", [MAX_HEADERS - 1, MAX_HEADERS, MAX_HEADERS + 1])
def test_field_count(count: int) -> None:
    data = head(sized(2000, count))
    for reads in splits(data, 7):
        assert refused(reads) == (count > MAX_HEADERS)


@pytest.mark.parametrize("total", [HEADERS_LIMIT - 1, HEADERS_LIMIT, HEADERS_LIMIT + 1])
@pytest.mark.parametrize("count", [10, 60])
def test_size(total: int, count: int) -> None:
    data = head(sized(total, count))
    for reads in splits(data, 9):
        assert refused(reads) == (total > HEADERS_LIMIT)


@pytest.mark.parametrize("total", [HEADERS_LIMIT - 1, HEADERS_LIMIT + 1])
def test_size_in_small_reads(total: int) -> None:
    data = head(sized(total, 40))
    reads = [data[i : i + 3000] for i in range(0, len(data), 3000)]
    assert refused(reads) == (total > HEADERS_LIMIT)


@pytest.mark.parametrize("trailers", [9, 10, 11])
def test_trailers_count_with_the_head(trailers: int) -> None:
    fields = sized(1000, MAX_HEADERS - 10)
    fields.append((b"Transfer-Encoding", b"chunked"))
    data = head(fields, b"POST / HTTP/1.1\r\n") + b"3\r\nabc\r\n0\r\n"
    data += b"".join(b"X-T%d: t\r\n" % i for i in range(trailers)) + b"\r\n"
    for reads in splits(data, 5):
        assert refused(reads) == (MAX_HEADERS - 9 + trailers > MAX_HEADERS)


@pytest.mark.parametrize("value", [100, 20_000])
def test_trailer_size_counts_with_the_head(value: int) -> None:
    fields = sized(HEADERS_LIMIT - 15_000, 30)
    fields.append((b"Transfer-Encoding", b"chunked"))
    data = head(fields, b"POST / HTTP/1.1\r\n") + b"3\r\nabc\r\n0\r\n"
    data += b"X-T: %s\r\n\r\n" % (b"t" * value)
    # Transfer-Encoding's own name and value count too
    total = HEADERS_LIMIT - 15_000 + len(b"Transfer-Encodingchunked") + 3 + value
    for reads in splits(data, 5):
        assert refused(reads) == (total > HEADERS_LIMIT)
