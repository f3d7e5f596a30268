"""Upgrades through the router: a WebSocket is a two-way tunnel once the backend answers 101,
counted per release (opened, open now, closed by which side), and closable by the router."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from router_kit import BackendProc, RouterProc, raw_http, table, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def tunnels(router: RouterProc, release: str) -> dict[str, Any]:
    return router.stats()["tunnels"].get(release, {"open": 0, "opened": 0, "closed_by": {}})


def test_websocket_echo_counted_and_closed_by_each_side(
    router: RouterProc, backend_a: BackendProc
) -> None:
    router.apply(table(1, ("a", 1, [backend_a])))
    with connect(f"ws://127.0.0.1:{router.port}/ws", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "a"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        big = b"x" * 1_000_000  # both ways through the tunnel, with backpressure
        ws.send(big)
        assert ws.recv(timeout=10) == big
        assert tunnels(router, "a")["open"] == 1
        assert router.stats()["backends"][backend_a.address]["tunnels"] == 1
        assert router.stats()["backends"][backend_a.address]["inflight"] == 1
    # The close handshake ends with the server closing TCP first: counted as the backend's.
    wait_for(lambda: tunnels(router, "a")["closed_by"].get("backend") == 1, "closed by backend")
    assert router.stats()["backends"][backend_a.address]["inflight"] == 0

    with connect(f"ws://127.0.0.1:{router.port}/ws", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "a"
        ws.socket.shutdown(socket.SHUT_RDWR)  # the client goes away without a close frame
    wait_for(lambda: tunnels(router, "a")["closed_by"].get("client") == 1, "closed by client")
    assert router.stats()["releases"]["a"]["requests"] == 2  # each handshake is a request

    with connect(f"ws://127.0.0.1:{router.port}/ws/close", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "a"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    wait_for(lambda: tunnels(router, "a")["closed_by"].get("backend") == 2, "closed by backend")

    with connect(f"ws://127.0.0.1:{router.port}/ws", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "a"
        r = router.admin().post("/tunnels/close", params={"backend": backend_a.address})
        assert r.json() == {"closed": 1}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    t = tunnels(router, "a")
    assert t == {"opened": 4, "open": 0, "closed_by": {"client": 1, "backend": 2, "router": 1}}

    # An upgrade the backend declines is a plain response, then the connection closes.
    answer = raw_http(
        router.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1  # the bytes after an upgrade request are never HTTP
    # Upgrade without "Connection: upgrade" is only a hop-by-hop header: dropped.
    answer = raw_http(
        router.port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"upgrade"' not in answer.lower()
