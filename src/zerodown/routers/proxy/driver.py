"""The built-in router as a driver (`router: {kind: builtin}`): the admin client of client.py, and
the life of the router process, which is this driver's and no one else's.

Guarantees (the Router and RouterStats contract, core/ports.py, plus):

- `start` makes sure one router process runs for this state directory. It is cheap when the
  router answers on its admin socket (asked at most once a second); when none runs it starts one
  in its own session (it outlives the controller, and restores its last route table from its
  state file by itself). A router process that runs but cannot be reached on its admin socket is
  reported (TransientDriverError), never doubled. A router that does not come up is a SpecError on
  `router.listen` that quotes what this start wrote to router.log.
- The controller keeps a copy of the router's listening sockets (it binds them and passes them to
  the router it starts, or asks a running router for copies over its `.handover` socket): while
  no router runs (one killed -9, until the next pass starts another, within CHECK_EVERY plus
  its start-up), connections wait in the listen backlog instead of being refused.
- `restart` starts a successor with `--take-over` (see handover.py): no connection is refused,
  no request fails. `start` does the same once when the running router is of another zerodown
  version (one that reports its version, i.e. that can hand over).
- With `router.workers` above 1, workers.py runs one of these per worker, each binding its own
  listening sockets with SO_REUSEPORT (`shared`); the first one serves `router.admin_listen`.
- `stop` sends SIGTERM, gives in-flight requests `grace` seconds, then SIGKILL; it signals only a
  process whose command line names this state directory's admin socket, so a pid the kernel
  recycled is never signalled. It stops the router that answers on the admin socket as well as
  the one router.pid names: `start` records (adopts) a router that answers but that another
  controller started and did not record (two controllers on one store, the starter cancelled
  when it lost its lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zerodown import __version__, procfs
from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import SpecError, TransientDriverError
from zerodown.core.ports import BackendLoad, Router
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.drivers import DriverContext
from zerodown.paths import Paths
from zerodown.routers.proxy.client import ProxyRouter, router_command
from zerodown.routers.proxy.handover import handover_path, request_sockets
from zerodown.routers.proxy.validate import parse_address
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.router")

CHECK_EVERY = 0.2  # seconds between health checks of a running router (a dead one is restarted)
START_WAIT = 5.0  # seconds a new router has to answer on its admin socket
KILL_WAIT = 10.0  # seconds `stop` waits after SIGKILL before it gives up
LOG_TAIL = 3  # lines of router.log quoted when the router does not start


def create(ctx: DriverContext) -> Router:
    count = ctx.spec.router.worker_count
    if count == 1 and not ctx.paths.router_worker_pids():
        return BuiltinRouter(paths=ctx.paths, spec=ctx.spec)
    # Several workers, or one now where there were several (the others are stopped).
    from zerodown.routers.proxy.workers import RouterWorkers  # it builds on this module

    return RouterWorkers(paths=ctx.paths, spec=ctx.spec, count=count)


class BuiltinRouter:
    def __init__(self, *, paths: Paths, spec: Spec, worker: int = 0, workers: int = 1) -> None:
        """The router process of this state directory, or with `router.workers` (workers.py)
        worker `worker` of `workers`: its admin socket and pid file are its own, and with more
        than one worker it binds its own listening sockets with SO_REUSEPORT (`shared`: the
        kernel spreads connections among the workers' sockets)."""
        self.paths = paths
        self.spec = spec  # as it was when the controller started: listen addresses, timeouts
        self.worker = worker
        self.workers = workers
        self.shared = workers > 1
        self.admin_socket = paths.router_worker_socket(worker)
        self.pid_file = paths.router_worker_pid(worker)
        self.name = f"router worker {worker}" if self.shared else "router"  # in messages
        self.client = ProxyRouter(str(self.admin_socket))
        self._checked_at = -math.inf
        self._children: list[subprocess.Popen[bytes]] = []  # routers we started, to reap them
        self._held: dict[str, socket.socket] = {}  # copies of the router's listening sockets
        self._version_checked = False
        # A router process that has started up and waits on its stdin to serve: it replaces a
        # router that dies in milliseconds instead of a Python start-up (--standby).
        self._standby: subprocess.Popen[bytes] | None = None

    # --- the process -------------------------------------------------------------------------

    async def start(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY:
            return
        self._reap()
        # The socket file too: our pooled connection may outlive it, a new client could not.
        health = await self.client.health() if self.admin_socket.is_socket() else None
        if health is not None:
            self._checked_at = now
            self._adopt(health.get("pid"))
            if not self._held:
                await self._hold_sockets()
            if not self._version_checked:
                self._version_checked = True
                version = health.get("version")
                if version is not None and version != __version__:
                    log.info(
                        "the %s runs zerodown %s, not %s: restarting it",
                        self.name,
                        version,
                        __version__,
                    )
                    await self.restart()
            self._ensure_standby()
            return
        running = self.pid()
        if running is not None:
            raise TransientDriverError(
                f"the {self.name} (pid {running}) runs but cannot be reached on its admin socket "
                f"{self.admin_socket}; traffic still flows through it. If this lasts, "
                "stop that process: the next pass starts a new router"
            )
        standby, self._standby = self._standby, None
        if standby is not None and standby.poll() is None and standby.stdin is not None:
            try:
                standby.stdin.write(b"\n")  # serve now
                standby.stdin.close()
            except OSError:
                standby = None
            if standby is not None:
                await self._ready(standby, take_over=False, log_from=None)
                self._checked_at = time.monotonic()
                return
        await self._spawn()
        self._checked_at = time.monotonic()

    def _ensure_standby(self) -> None:
        """Keep one standby router (only once we hold the listening sockets it would use)."""
        if "listen" not in self._held:
            return
        if self._standby is not None and self._standby.poll() is None:
            return
        argv, fds = self._argv(take_over=False)
        with open(self.paths.logs / "router.log", "ab") as out:
            self._standby = subprocess.Popen(
                [*argv, "--standby"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,
                start_new_session=True,
                pass_fds=fds,
            )

    def _drop_standby(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None and standby.stdin is not None:
            with contextlib.suppress(OSError):
                standby.stdin.close()  # end of input: it exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                standby.wait(2)

    async def restart(self) -> dict[str, Any]:
        """Replace the router by a new process without refusing a connection: the successor
        takes the sockets over, the old router finishes its requests and exits."""
        health = await self.client.health()
        if health is not None and health.get("hold", {}).get("holding"):
            raise TransientDriverError(
                "the router is holding traffic: `zerodown release` first, then restart it"
            )
        if health is None:
            raise TransientDriverError(
                f"no router answers on {self.admin_socket}: nothing to restart "
                "(the controller starts one by itself; `zerodown up` if it does not run)"
            )
        child = await self._spawn(take_over=True)
        return {"old_pid": health.get("pid"), "pid": child.pid, "took_over": True}

    def _reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]

    async def _hold_sockets(self) -> None:
        try:
            conn, sockets, _meta = await asyncio.to_thread(
                request_sockets, handover_path(self.admin_socket), b"give", timeout=5.0
            )
        except (OSError, ValueError, KeyError):
            return  # a router of an older zerodown: nothing to keep
        conn.close()
        for name, sock in sockets.items():
            if name in ("listen", "preview"):
                self._held[name] = sock
            else:
                sock.close()

    def _bind(self, name: str, address: str, field: str) -> socket.socket:
        sock = self._held.get(name)
        if sock is None:
            host, port = parse_address(address)
            try:
                sock = socket.create_server((host, port), backlog=2048, reuse_port=self.shared)
            except OSError as e:
                raise SpecError(
                    f"the {self.name} cannot listen on {address}: {e.strerror}", field=field
                ) from None
            self._held[name] = sock
        return sock

    def _tls_files(self) -> list[tuple[str, str]]:
        """The certificate files, relative to the spec's folder; a missing one is named."""
        tls = self.spec.router.tls
        pairs: list[tuple[str, str]] = []
        for n, c in enumerate(tls.certificates if tls else ()):
            pair = []
            for which in ("cert", "key"):
                path = self.paths.spec_dir / getattr(c, which)
                if not path.is_file():
                    raise SpecError(
                        f"{path}: no such file; give the PEM {which} file of this certificate",
                        field=f"router.tls.certificates[{n}].{which}",
                    )
                pair.append(str(path.resolve()))
            pairs.append((pair[0], pair[1]))
        return pairs

    def _release_sockets(self) -> None:
        for sock in self._held.values():
            sock.close()
        self._held.clear()

    def _argv(self, *, take_over: bool) -> tuple[list[str], tuple[int, ...]]:
        """The router's argv, and the inherited sockets to pass (none to a successor)."""
        router = self.spec.router
        blue_green = self.spec.strategy.blue_green
        preview = blue_green.preview_listen if blue_green else None
        fds: dict[str, int] = {}
        if not take_over:  # a successor gets the sockets from the router it replaces
            fds["listen"] = self._bind("listen", router.listen, "router.listen").fileno()
            if preview:
                fds["preview"] = self._bind(
                    "preview", preview, "strategy.blue_green.preview_listen"
                ).fileno()
        # The TCP admin API: the first worker's, merging the others' counters (admin.py).
        admin_listen = router.admin_listen if self.worker == 0 else None
        argv = router_command(
            listen=router.listen,
            preview_listen=preview,
            admin_socket=str(self.admin_socket),
            state_file=str(self.paths.router_state),
            admin_listen=admin_listen,
            admin_token_file=str(self.paths.token_file) if admin_listen else None,
            header_timeout=router.header_timeout,
            tls=self._tls_files(),
            # A redirect is little work: one worker answers it (no port to share).
            redirect_http=router.tls.redirect_http if router.tls and self.worker == 0 else None,
            admin_tls=bool(router.tls and router.tls.admin and admin_listen),
            siblings=[str(self.paths.router_worker_socket(n)) for n in range(1, self.workers)]
            if admin_listen
            else [],
            take_over=take_over,
            listen_fd=fds.get("listen"),
            preview_listen_fd=fds.get("preview"),
        )
        return argv, tuple(fds.values())

    async def _spawn(self, *, take_over: bool = False) -> subprocess.Popen[bytes]:
        argv, fds = self._argv(take_over=take_over)
        log_file = self.paths.logs / "router.log"
        with open(log_file, "ab") as out:
            written_before = out.tell()  # what this start writes is what explains a failure
            child = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=fds,
            )
        return await self._ready(child, take_over=take_over, log_from=written_before)

    async def _ready(
        self, child: subprocess.Popen[bytes], *, take_over: bool, log_from: int | None
    ) -> subprocess.Popen[bytes]:
        """Wait until `child` answers on the admin socket; then it is the router."""
        router = self.spec.router
        log_file = self.paths.logs / "router.log"
        self._children.append(child)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline and child.poll() is None:
            health = await self.client.health()
            if health is not None and health.get("pid") == child.pid:
                self.pid_file.write_text(str(child.pid))
                how = "took over" if take_over else "started"
                log.info("%s %s (pid %s) on %s", self.name, how, child.pid, router.listen)
                return child
            await asyncio.sleep(0.005)
        with contextlib.suppress(OSError):
            child.kill()
        tail: list[str] = []
        if log_from is not None:
            with open(log_file, "rb") as written:
                written.seek(log_from)
                tail = written.read(4096).decode(errors="replace").strip().splitlines()[-LOG_TAIL:]
        raise SpecError(
            f"the {self.name} did not start on {router.listen}: {' | '.join(tail)}",
            field="router.listen",
        )

    def pid(self) -> int | None:
        """The pid of this state directory's router while it runs (never a recycled pid)."""
        try:
            return self._ours(int(self.pid_file.read_text()))
        except (OSError, ValueError):
            return None

    def _ours(self, pid: object) -> int | None:
        """`pid` if it is a running router of this state directory's admin socket."""
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        ours = str(self.admin_socket).encode() in cmdline
        return pid if ours and procfs.running(pid) else None

    def _adopt(self, pid: object) -> None:
        """Record the router that answers on the admin socket as this directory's router.

        The controller that started it may not have: with two controllers on one store, a
        leader that loses its lease while its router starts up is cancelled before it writes
        router.pid; the next leader finds that router answering and uses it, and its `stop`
        (the end of `zerodown down`) must know which process to stop."""
        answering = self._ours(pid)
        if answering is not None and answering != self.pid():
            self.pid_file.write_text(str(answering))
            log.info("%s (pid %s) adopted", self.name, answering)

    async def stop(self, *, grace: float) -> None:
        self._drop_standby()
        self._release_sockets()  # nothing should wait for a router that is going away
        # The router that answers, whoever started it, and the one router.pid names.
        health = await self.client.health() if self.admin_socket.is_socket() else None
        pids = {p for p in (self._ours((health or {}).get("pid")), self.pid()) if p is not None}
        for pid in sorted(pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed = False
        while left := [p for p in pids if procfs.running(p)]:
            if time.monotonic() > deadline + KILL_WAIT:
                log.warning("the %s (pid %s) is still there after SIGKILL", self.name, left)
                return
            if time.monotonic() > deadline and not killed:
                for pid in left:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        for child in self._children:
            if child.pid in pids:
                child.wait()  # reaped: a zombie is gone already, for the tests above
        self._reap()  # and any other router it started that has exited meanwhile

    # --- the admin API -----------------------------------------------------------------------

    async def healthy(self) -> bool:
        return await self.client.healthy()

    async def apply(self, table: RouteTable) -> None:
        await self.client.apply(table)

    async def table(self) -> RouteTable:
        return await self.client.table()

    async def verify(self, table: RouteTable) -> bool | None:
        return await self.client.verify(table)

    async def backends(self) -> dict[str, BackendLoad]:
        return await self.client.backends()

    async def hold(self, seconds: float) -> dict[str, Any]:
        return await self.client.hold(seconds)

    async def release(self) -> dict[str, Any]:
        return await self.client.release()

    async def close_tunnels(self, address: str) -> int:
        return await self.client.close_tunnels(address)

    async def stats(self) -> dict[str, ReleaseStats]:
        return await self.client.stats()

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        return await self.client.samples(release, since)

    async def aclose(self) -> None:
        """Close the admin connection; the router process keeps serving (not the standby)."""
        self._drop_standby()
        await self.client.aclose()
