"""ASGI and WSGI middleware: the request's context reaches the SDK, and the response names the
variants the request used."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import anyio
import httpx
import pytest
from fastapi import FastAPI

from zerodown.flags.client import FlagClient
from zerodown.flags.context import current_context
from zerodown.flags.middleware import FlagsASGIMiddleware, FlagsWSGIMiddleware

DEFS = {
    "version": 1,
    "flags": [
        {"key": "on", "enabled": True},
        {"key": "off"},
        {
            "key": "vip",
            "enabled": True,
            "strategies": [{"kind": "user_ids", "user_ids": ["42"]}],
        },
        {
            "key": "color",
            "enabled": True,
            "variants": [{"name": "blue", "weight": 1}],
        },
    ],
}


@pytest.fixture
def sdk() -> Iterator[FlagClient]:
    with FlagClient(bootstrap=DEFS) as c:
        yield c


def test_asgi_middleware(sdk: FlagClient) -> None:
    app = FastAPI()

    @app.get("/")
    def index() -> dict[str, Any]:  # sync: runs in a worker thread, the context follows
        ctx = current_context.get()
        return {
            "vip": sdk.is_enabled("vip"),
            "on": sdk.is_enabled("on"),
            "color": sdk.variant("color").variant,
            "session": ctx.session_id if ctx else None,
        }

    @app.get("/none")
    async def none() -> dict[str, str]:
        return {}

    async def main() -> None:
        transport = httpx.ASGITransport(app=FlagsASGIMiddleware(app), client=("10.0.0.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/", headers={"X-User-Id": "42", "Cookie": "session=s1"})
            assert r.json() == {"vip": True, "on": True, "color": "blue", "session": "s1"}
            assert r.headers["x-zerodown-flags"] == "color=blue,on=on,vip=on"
            r = await c.get("/", headers={"X-User-Id": "7"})
            assert r.headers["x-zerodown-flags"] == "color=blue,on=on,vip=off"
            r = await c.get("/none")
            assert "x-zerodown-flags" not in r.headers

    anyio.run(main)
    assert current_context.get() is None


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_middleware(sdk: FlagClient) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        # Evaluates before start_response, as frameworks do while building the response.
        body = f"vip={sdk.is_enabled('vip')} off={sdk.is_enabled('off')}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield body

    server = make_server("127.0.0.1", 0, FlagsWSGIMiddleware(app), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        with httpx.Client(timeout=10) as c:
            r = c.get(url, headers={"X-User-Id": "42"})
            assert r.text == "vip=True off=False"
            assert r.headers["x-zerodown-flags"] == "off=off,vip=on"
            r = c.get(url)
            assert r.text == "vip=False off=False"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
