"""Reading HAProxy's per-request lines from its in-memory ring, through the Runtime API.

Why not have HAProxy send them: a `ring` section with a `server` (the controller's socket) makes
HAProxy 2.6 connect to that server again at once whenever the connection fails: its forwarder's
session ends, wakes the ring's forwarding task, which starts the next session at once (sink.c:
no delay between attempts). With no controller listening, `connect()` fails at once (ENOENT or
ECONNREFUSED) and HAProxy loops on socket/connect/close: measured, a quarter to a whole core
while the controller is down. A ring with no server costs nothing without a reader: HAProxy
writes each line into its 4 MB ring and, once the ring is full, forgets the oldest.

The controller reads the ring instead: `show events <ring> -w` on the Runtime API socket (0600)
streams every line written to the ring, as the forwarder would have (many lines a write; when
the reader falls behind, HAProxy keeps the unread lines and drops new ones only once the whole
ring is unread). `-n` starts at the end of what the ring holds.

`EventsReader` (a thread of its own) keeps one such session to the current worker, opened when
the driver says which kind:

- `resume()` (the driver found HAProxy running): a session from the ring's end (`-n`), unless
  one is open; the counters start there;
- `follow_new_worker(old_done)` (the driver started HAProxy, or reloaded it): a session that
  reads the new worker's ring from its start (it holds only that worker's lines, so nothing
  is missed nor read twice); after a reload the session to the old worker stays open while
  the old worker finishes its requests, until `old_done()` says it has no client left (then
  `LINGER` seconds more, for its last lines). A stopping worker waits for its CLI sessions
  too, so the reader must let go (HAProxy's `hard-stop-after` ends it otherwise).

A session that ends by itself (HAProxy gone) is not opened again until the driver says so: the
driver starts HAProxy again (a new worker: from its start), or finds it running (from the end).
A session that cannot be opened is tried again every `RETRY` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("zerodown.router.ringevents")

RETRY = 0.5  # seconds between attempts to open a session
LINGER = 0.3  # seconds an old worker's session stays open once it has no client
CHECK_EVERY = 0.2  # seconds between checks that an old worker has no client left
POLL = 0.1  # seconds the thread waits for data before looking at its sessions again
MAX_PARTIAL = 8192


class EventsReader:
    def __init__(
        self,
        admin_socket: Path,
        ring: str,
        on_lines: Callable[[Sequence[bytes]], None],
    ) -> None:
        self.admin_socket = admin_socket
        self.ring = ring
        self.on_lines = on_lines
        self.sessions = 0  # sessions opened (tests read it)
        self._requests: list[Callable[[], bool] | bool | None] = []  # see _run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"ring {self.ring}", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()

    def resume(self) -> None:
        """HAProxy runs: a session from the ring's end, unless one is open."""
        with self._lock:
            self._requests.append(True)

    def follow_new_worker(self, old_done: Callable[[], bool] | None = None) -> None:
        """A new HAProxy worker serves from now on: read its ring from its start; keep the
        open session (the old worker's) until `old_done()`, or close it now when None."""
        with self._lock:
            self._requests.append(old_done)

    def _open(self, *, from_end: bool) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(str(self.admin_socket))
            sock.sendall(f"show events {self.ring} -w{' -n' if from_end else ''}\n".encode())
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sessions += 1
        return sock

    def _run(self) -> None:
        current: socket.socket | None = None
        want: bool | None = None  # a session to open: from the ring's end (True), start (False)
        retry_at = 0.0
        checked_at = 0.0
        old: dict[socket.socket, Callable[[], bool]] = {}
        closing: dict[socket.socket, float] = {}
        partial: dict[socket.socket, bytes] = {}
        with selectors.DefaultSelector() as selector:

            def drop(conn: socket.socket) -> None:
                selector.unregister(conn)
                conn.close()
                partial.pop(conn, None)
                old.pop(conn, None)
                closing.pop(conn, None)

            while not self._stop.is_set():
                with self._lock:
                    requests, self._requests = self._requests, []
                for request in requests:
                    if request is True:  # resume: only when no session is open or wanted
                        if current is None and want is None:
                            want = True
                        continue
                    if current is not None:
                        if request is None:
                            drop(current)
                        else:
                            assert callable(request)
                            old[current] = request
                    current, want, retry_at = None, False, 0.0
                now = time.monotonic()
                if current is None and want is not None and now >= retry_at:
                    try:
                        current = self._open(from_end=want)
                    except OSError:
                        retry_at = now + RETRY
                    else:
                        selector.register(current, selectors.EVENT_READ)
                        partial[current] = b""
                        want = None
                if not selector.get_map():
                    self._stop.wait(POLL)
                    continue
                for key, _ in selector.select(POLL):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    try:
                        data = conn.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        if partial.get(conn):
                            self.on_lines([partial[conn]])
                        drop(conn)
                        if conn is current:
                            current = None  # HAProxy went away: the driver says what next
                        continue
                    *lines, rest = (partial[conn] + data).split(b"\n")
                    partial[conn] = rest[-MAX_PARTIAL:]
                    if lines:
                        self.on_lines(lines)
                now = time.monotonic()
                if old and now - checked_at >= CHECK_EVERY:
                    checked_at = now
                    for conn, old_done in list(old.items()):
                        if conn not in closing and _safe(old_done):
                            closing[conn] = now + LINGER
                for conn, at in list(closing.items()):
                    if now >= at:
                        drop(conn)
            for conn in list(partial):
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(conn)
                conn.close()


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # a failing check keeps the session: the old worker's end closes it
        log.exception("checking an old HAProxy worker failed")
        return False
