"""`router.tls.redirect_http`: a plain-HTTP listener that sends every request to HTTPS (308, so
the method and body are kept), then closes the connection."""

from __future__ import annotations

import asyncio

import httptools

from zerodown.routers.proxy.framing import valid_host

MAX_HEAD = 16 * 1024


class RedirectConn(asyncio.Protocol):
    def __init__(self, https_port: int) -> None:
        self.https_port = https_port
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.host = b""
        self.size = 0
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the head is complete; an upgrade goes to HTTPS like anything else
        except httptools.HttpParserError:
            self.answer(400, b"")
            return
        if not self.answered and self.size > MAX_HEAD:
            self.answer(431, b"")

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.host = value

    def on_headers_complete(self) -> None:
        host = self.host
        if not host or not valid_host(host) or self.url[:1] != b"/":
            self.answer(400, b"")
            return
        # The host without its port ([v6]:port keeps its brackets).
        name = host[: host.index(b"]") + 1] if host.startswith(b"[") else host.rsplit(b":", 1)[0]
        port = b"" if self.https_port == 443 else b":%d" % self.https_port
        self.answer(308, b"https://" + name + port + self.url)

    def answer(self, status: int, location: bytes) -> None:
        self.answered = True
        reason = {308: b"Permanent Redirect", 400: b"Bad Request", 431: b"Too Large"}[status]
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if location:
            head += b"Location: " + location + b"\r\n"
        head += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        assert self.transport is not None
        self.transport.write(head)
        self.transport.close()
