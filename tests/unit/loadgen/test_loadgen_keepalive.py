"""The load generator treats keep-alive connections as real HTTP clients do: a connection the
server closed while idle is not reused, and an idempotent request whose reused connection closes
before any response byte is sent again once (counted), never for a POST."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from zerodown.loadgen import LoadGenerator

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Version: v1\r\n\r\nok\n"


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    """Answers the first request of each connection, then drops the next one unanswered (as a
    reloading proxy's old worker may)."""
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=_connection, args=(conn,), daemon=True).start()


def _connection(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(2)
        try:
            if not conn.recv(65536):
                return
            conn.sendall(RESPONSE)
            conn.recv(65536)  # the second request: closed without an answer
        except OSError:
            return


@pytest.fixture
def server() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, stop), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join()
    listener.close()


def test_get_on_a_dropped_keepalive_connection_is_retried_once(server: str) -> None:
    with LoadGenerator(server, rate=200, connections=2, max_seconds=5, browser_like=True) as load:
        deadline = time.monotonic() + 5
        while load.report.total < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert load.report.total >= 20
    assert load.report.failed == []
    assert load.report.retried >= 5


def test_post_on_a_dropped_keepalive_connection_fails(server: str) -> None:
    with LoadGenerator(
        server, rate=200, connections=1, max_seconds=5, method="POST", browser_like=True
    ) as load:
        deadline = time.monotonic() + 5
        while len(load.report.failed) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(load.report.failed) >= 3
    assert load.report.retried == 0


def test_the_strict_default_counts_a_dropped_keepalive_connection_as_a_failure(
    server: str,
) -> None:
    with LoadGenerator(server, rate=200, connections=2, max_seconds=5) as load:
        deadline = time.monotonic() + 5
        while len(load.report.failed) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(load.report.failed) >= 3 and load.report.retried == 0
