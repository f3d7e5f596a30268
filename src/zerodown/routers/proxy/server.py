"""The router process: listeners, the live route table, backends, counters, graceful stop.

The top of the router's modules: `Router` holds the live state that the data plane (through
dataplane.RouterState) and the admin API (through admin.RouterControl) use, and `serve` wires
them to their sockets; nothing below imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerodown import __version__
from zerodown.core.routes import RouteTable
from zerodown.routers.proxy.admin import Admin
from zerodown.routers.proxy.dataplane import ClientConn
from zerodown.routers.proxy.events import log
from zerodown.routers.proxy.handover import handover_path, request_sockets, send_sockets
from zerodown.routers.proxy.hold import Hold
from zerodown.routers.proxy.memory import give_back
from zerodown.routers.proxy.redirect import RedirectConn
from zerodown.routers.proxy.routing import CompiledTable
from zerodown.routers.proxy.statefile import load_state
from zerodown.routers.proxy.stats import (
    DEFAULT_SAMPLES,
    ReleaseCounters,
    TunnelCounts,
    prometheus_text,
)
from zerodown.routers.proxy.tls import Certificates, CertPair
from zerodown.routers.proxy.upstream import BackendState
from zerodown.routers.proxy.validate import parse_address

UPSTREAM_IDLE = 4.0  # close idle backend connections before a typical 5 s server keep-alive
CLIENT_IDLE = 75.0  # close client connections idle this long
HEADER_TIMEOUT = 10.0  # a client still sending its request headers after this is cut (408)
SLOW_HEADS_PER_ADDRESS = 32  # connections of one address that may sit in a partial head
SWEEP_EVERY = 1.0
IDLE_GRACE = 5.0
"""Stopping: an idle keep-alive connection is closed once idle this long. A client sending
steadily gets its next answer with `Connection: close` first (and reconnects, to the router
that took over); closing an idle connection can cross a request the client is just sending
(and a client that reuses a connection without noticing it was closed fails its next request),
so only connections that look abandoned are closed."""
HANDOVER_WAIT = 15.0  # seconds a successor has to say `ready` after it got the sockets
GIVE_BACK_AFTER = 128  # connections gone (and at least half of the peak) before memory is returned


class Router:
    """Live state shared by every connection of the router."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        samples: int = DEFAULT_SAMPLES,
        connect_timeout: float = 3.0,
        header_timeout: float = HEADER_TIMEOUT,
        max_slow_heads: int = SLOW_HEADS_PER_ADDRESS,
    ) -> None:
        self.loop = loop
        self.now = time.monotonic  # uvloop's loop.time() only has millisecond resolution
        # time.time() - time.monotonic(), set again each sweep: a sample's wall time is then
        # derived from the clock read the latency already took.
        self.wall_offset = time.time() - time.monotonic()
        self.samples = samples
        self.connect_timeout = connect_timeout
        self.header_timeout = header_timeout
        self.max_slow_heads = max_slow_heads
        # Per client address, its connections whose request head is incomplete after a read.
        self.slow_heads: dict[bytes, int] = {}
        self.backends: dict[str, BackendState] = {}
        self.releases: dict[str, ReleaseCounters] = {}
        self.tunnels: dict[str, TunnelCounts] = {}  # upgraded connections, per release
        self.clients: set[ClientConn] = set()
        self.clients_peak = 0  # most client connections at once since memory was last given back
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.handed_over = False  # a successor serves our sockets: the admin API refuses changes
        self.hold = Hold()
        self._hold_timer: asyncio.TimerHandle | None = None
        self.table: CompiledTable[BackendState] = CompiledTable(RouteTable(0), self._unused)

    @staticmethod
    def _unused(address: str, release: str) -> BackendState:
        raise AssertionError("the empty table has no backends")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a network event: make it visible (the request it served gets no answer).
            log("router.bug", error=repr(task.exception()))

    def counters(self, release: str) -> ReleaseCounters:
        c = self.releases.get(release)
        if c is None:
            c = self.releases[release] = ReleaseCounters(self.samples)
        return c

    def tunnel_counts(self, release: str) -> TunnelCounts:
        t = self.tunnels.get(release)
        if t is None:
            t = self.tunnels[release] = TunnelCounts()
        return t

    def close_tunnels(self, address: str | None = None) -> int:
        """Close the upgraded connections of one backend (all: None), so that their clients
        reconnect, through the table, to a backend that stays. How many were closed."""
        closed = 0
        for b in list(self.backends.values()):
            if address is None or b.address == address:
                for t in list(b.tunnels):
                    t.end_tunnel("router")
                    closed += 1
        return closed

    # holding traffic (hold.py)

    @property
    def holding(self) -> bool:
        return bool(self.hold.until)

    def hold_traffic(self, seconds: float) -> dict[str, Any]:
        """Queue new requests for at most `seconds` (a second call sets a new limit)."""
        now = self.now()
        self.hold.until = now + seconds
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._hold_timer = self.loop.call_later(seconds, self._hold_ran_out)
        log("router.holding", seconds=seconds)
        return self.hold.to_json(now)

    def release_traffic(self) -> dict[str, Any]:
        """Route the held requests, in order; new ones flow again."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        released = self.hold.end(refuse=False)
        log("router.released", requests=released)
        self._pump()
        return {**self.hold.to_json(self.now()), "released": released}

    def _hold_ran_out(self) -> None:
        self._hold_timer = None
        refused = self.hold.end(refuse=True)
        log("router.hold_expired", refused=refused)

    def _pump(self) -> None:
        hold = self.hold
        hold.pump(sum(b.inflight for b in self.backends.values()))
        if hold.releasing:
            self.loop.call_later(0.002, self._pump)

    def install(self, table: RouteTable) -> None:
        """Swap in a new table (atomic: one assignment); retire backends that left it."""
        seen: dict[str, BackendState] = {}

        def backend_for(address: str, release: str) -> BackendState:
            b = self.backends.get(address)
            if b is None:
                host, port = parse_address(address)
                b = self.backends[address] = BackendState(address, host, port, release)
            elif address not in seen:
                b.release = release
            b.in_table = True
            seen[address] = b
            return b

        compiled = CompiledTable(table, backend_for)
        for p in table.pools:
            self.counters(p.release)
        self.table = compiled
        for address, b in list(self.backends.items()):
            if address not in seen:
                b.in_table = False
                b.close_idle()  # at once: nobody may send to an instance that left the table
                if b.inflight == 0:
                    del self.backends[address]

    def forget(self, backend: BackendState) -> None:
        if self.backends.get(backend.address) is backend:
            del self.backends[backend.address]
        backend.close_idle()

    def inflight(self) -> int:
        """Requests being answered (open tunnels aside: they have no end to wait for)."""
        return sum(1 for c in self.clients if c.active is not None and not c.active.tunneling)

    def sweep(self) -> None:
        now = self.now()
        self.wall_offset = time.time() - now
        for b in self.backends.values():
            b.close_idle(older_than=now - UPSTREAM_IDLE)
        cutoff = now - CLIENT_IDLE
        head_cutoff = now - self.header_timeout
        for c in list(self.clients):
            if c.head_since:
                if c.paused:
                    c.head_since = now  # we are not reading it: the client is not the slow one
                elif c.head_since < head_cutoff:
                    c.cut(408, b"request headers not received in time")
            elif c.active is None and c.idle_since < cutoff:
                c.close()
        left = len(self.clients)
        if self.clients_peak - left >= GIVE_BACK_AFTER and left <= self.clients_peak // 2:
            # A moment later: closed transports release their buffers after connection_lost.
            self.loop.call_later(SWEEP_EVERY, give_back)
            self.clients_peak = left

    # views for the admin API

    def stats_json(self) -> dict[str, Any]:
        return {
            "generation": self.table.generation,
            "releases": {n: c.to_json() for n, c in self.releases.items()},
            "backends": {
                a: {
                    "release": b.release,
                    "inflight": b.inflight,
                    "requests": b.requests,
                    "tunnels": len(b.tunnels),
                }
                for a, b in self.backends.items()
            },
            "tunnels": {n: t.to_json() for n, t in self.tunnels.items()},
            "hold": self.hold.to_json(self.now()),
            "clients": {
                "connections": len(self.clients),
                "sending_headers": sum(self.slow_heads.values()),
            },
        }

    def metrics_text(self) -> str:
        return prometheus_text(
            self.releases, [(b.release, a, b.inflight) for a, b in self.backends.items()]
        )


@dataclass(frozen=True, slots=True)
class Options:
    listen: str
    admin_socket: Path
    state_file: Path
    preview_listen: str | None = None
    admin_listen: str | None = None
    admin_token: str | None = None
    samples: int = DEFAULT_SAMPLES
    drain_timeout: float = 30.0
    connect_timeout: float = 3.0
    header_timeout: float = HEADER_TIMEOUT
    max_slow_heads: int = SLOW_HEADS_PER_ADDRESS
    take_over: bool = False  # take the sockets of the router running on admin_socket
    listen_fd: int | None = None  # an inherited listening socket (the controller keeps a copy)
    preview_listen_fd: int | None = None
    tls: tuple[CertPair, ...] = ()  # TLS on the client listeners (listen, preview)
    redirect_http: str | None = None  # a plain listener that redirects to https (with tls)
    standby: bool = False  # wait for a byte on stdin before serving (__main__)
    admin_tls: bool = False  # the TCP admin API over TLS too (the same certificates)
    siblings: tuple[Path, ...] = ()  # the other workers' admin sockets (router.workers)


def unix_listener(path: Path) -> socket.socket:
    """A unix socket that only its owner can connect to (mode 0600 from the start)."""
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket of a router that died
        else:
            raise OSError(f"{path}: another router is already listening on this admin socket")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the file is created by bind(): no window with wider permissions
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def tcp_listener(address: str) -> socket.socket:
    host, port = parse_address(address)
    sock = socket.create_server((host, port), backlog=2048)  # SO_REUSEADDR on POSIX
    sock.setblocking(False)
    return sock


def inherited(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


class Handover:
    """The `.handover` socket's server side (see handover.py): gives the sockets away, and after
    a `take` answered `ready`, sets `stop` with `router.handed_over` set."""

    def __init__(
        self,
        router: Router,
        admin: Admin,
        sockets: dict[str, socket.socket],
        stop: asyncio.Event,
    ) -> None:
        self.router = router
        self.admin = admin
        self.sockets = sockets
        self.stop = stop

    async def serve(self) -> None:
        loop = self.router.loop
        listener = self.sockets["handover"]
        while True:
            conn, _ = await loop.sock_accept(listener)
            self.router.spawn(self.answer(conn))

    async def answer(self, conn: socket.socket) -> None:
        loop = self.router.loop
        conn.setblocking(False)
        with conn:
            try:
                async with asyncio.timeout(5.0):
                    verb = (await loop.sock_recv(conn, 16)).strip()
            except (TimeoutError, OSError):
                return
            meta = {"pid": os.getpid(), "version": __version__}
            if verb == b"give":
                send_sockets(conn, self.sockets, **meta)
                return
            if verb != b"take" or self.router.handed_over:
                return
            if self.router.hold.until:
                # Held requests cannot move to another process: release (or let lapse) first.
                await loop.sock_sendall(
                    conn, json.dumps({"error": "the router is holding traffic"}).encode()
                )
                return
            # No table change between the successor reading the state file and taking over.
            async with self.admin.lock:
                send_sockets(conn, self.sockets, **meta)
                try:
                    async with asyncio.timeout(HANDOVER_WAIT):
                        ready = await loop.sock_recv(conn, 16)
                except (TimeoutError, OSError):
                    ready = b""
                if ready.strip() != b"ready":
                    log("router.handover_failed", reason="the successor did not become ready")
                    return
                self.router.handed_over = True
            log("router.handed_over")
            self.stop.set()


async def serve(opts: Options, table: RouteTable | None) -> int:
    loop = asyncio.get_running_loop()
    router = Router(
        loop,
        samples=opts.samples,
        connect_timeout=opts.connect_timeout,
        header_timeout=opts.header_timeout,
        max_slow_heads=opts.max_slow_heads,
    )
    successor_of: socket.socket | None = None
    sockets: dict[str, socket.socket] = {}
    if opts.take_over:
        # Blocking, on purpose: nothing else runs yet. The old router holds its admin lock
        # from here until we say ready, so the state file is the table it serves.
        successor_of, sockets, meta = request_sockets(handover_path(opts.admin_socket), b"take")
        log("router.taking_over", pid=meta.get("pid"), version=meta.get("version"))
        for sock in sockets.values():
            sock.setblocking(False)
        table = load_state(opts.state_file)
    if "listen" not in sockets:
        sockets["listen"] = (
            inherited(opts.listen_fd) if opts.listen_fd is not None else tcp_listener(opts.listen)
        )
    if opts.preview_listen and "preview" not in sockets:
        sockets["preview"] = (
            inherited(opts.preview_listen_fd)
            if opts.preview_listen_fd is not None
            else tcp_listener(opts.preview_listen)
        )
    if opts.redirect_http and "redirect" not in sockets:
        sockets["redirect"] = tcp_listener(opts.redirect_http)
    if "admin" not in sockets:
        sockets["admin"] = unix_listener(opts.admin_socket)
        path = handover_path(opts.admin_socket)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # only ever ours: the admin socket above proved no router runs
        sockets["handover"] = unix_listener(path)
    if table is not None:
        router.install(table)
    certs = Certificates(list(opts.tls)) if opts.tls else None
    ssl_ctx = certs.server if certs else None
    https = certs is not None
    timeout = opts.header_timeout if certs else None  # a handshake is part of the head's time
    servers: list[asyncio.Server] = [
        await loop.create_server(
            lambda: ClientConn(router, False, https),
            sock=sockets["listen"],
            ssl=ssl_ctx,
            ssl_handshake_timeout=timeout,
        )
    ]
    if "preview" in sockets:
        servers.append(
            await loop.create_server(
                lambda: ClientConn(router, True, https),
                sock=sockets["preview"],
                ssl=ssl_ctx,
                ssl_handshake_timeout=timeout,
            )
        )
    if "redirect" in sockets:
        https_port = sockets["listen"].getsockname()[1]
        servers.append(
            await loop.create_server(lambda: RedirectConn(https_port), sock=sockets["redirect"])
        )
    admin = Admin(router, opts.state_file, opts.admin_token, opts.siblings)
    admin_servers = [await asyncio.start_unix_server(admin.handle_unix, sock=sockets["admin"])]
    if opts.admin_listen:
        host, port = parse_address(opts.admin_listen)
        admin_servers.append(
            await asyncio.start_server(
                admin.handle_tcp,
                host,
                port,
                reuse_port=True,
                ssl=ssl_ctx if opts.admin_tls else None,
                ssl_handshake_timeout=timeout if opts.admin_tls else None,
            )
        )

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handover_task = loop.create_task(Handover(router, admin, sockets, stop).serve())

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            router.sweep()
            if certs is not None:
                certs.reload_if_changed()  # a certificate replaced on disk: new handshakes

    sweep_task = loop.create_task(sweeper())
    # Everything start-up made (modules, the table) lives as long as the process: moved out of
    # the collector's sight, so its full passes scan only what serving allocates (about 8% of
    # the router's Python time per request without it, with the heap the imports leave).
    gc.collect()
    gc.freeze()
    if successor_of is not None:
        with successor_of:
            successor_of.setblocking(True)
            successor_of.sendall(b"ready\n")
    log(
        "router.started",
        listen=opts.listen,
        preview_listen=opts.preview_listen,
        admin_socket=str(opts.admin_socket),
        admin_listen=opts.admin_listen,
        generation=router.table.generation,
        pid=os.getpid(),
        took_over=opts.take_over,
    )
    await stop.wait()

    if router.hold.until:
        router.release_traffic()  # nothing held is left behind (a successor starts unheld)
    # Graceful stop: no new connections (a successor, if any, accepts them now), finish what
    # is in flight and let keep-alive clients go (bounded), then exit 0.
    router.draining = True
    handover_task.cancel()
    for s in servers:
        s.close()
    for s in admin_servers:
        s.close()
    tunnels = router.close_tunnels()  # their clients reconnect, to the successor if there is one
    deadline = loop.time() + opts.drain_timeout
    while router.clients and loop.time() < deadline:
        idle_before = router.now() - IDLE_GRACE
        for c in list(router.clients):
            if c.active is None and c.idle_since < idle_before:
                c.close()
        await asyncio.sleep(0.02)
    left = router.inflight()
    log("router.stopping", unfinished=left, tunnels_closed=tunnels, handed_over=router.handed_over)
    for c in list(router.clients):
        c.close()
    for b in router.backends.values():
        b.close_idle()
    sweep_task.cancel()
    if not router.handed_over:  # the successor serves on these paths now
        for path in (opts.admin_socket, handover_path(opts.admin_socket)):
            with contextlib.suppress(OSError):
                path.unlink()
    await asyncio.sleep(0)  # let the transports close
    return 0
