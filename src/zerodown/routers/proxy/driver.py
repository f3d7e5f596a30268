"""The built-in router as a driver (`router: {kind: builtin}`): the admin client of client.py, and
the life of the router process, which is this driver's and no one else's.

Guarantees (the Router and RouterStats contract, core/ports.py, plus):

- `start` makes sure one router process runs for this state directory. It is cheap when the
  router answers on its admin socket (asked at most once a second); when none runs it starts one
  in its own session (it outlives the controller, and restores its last route table from its
  state file by itself). A router process that runs but cannot be reached on its admin socket is
  reported (TransientDriverError), never doubled. A router that does not come up is a SpecError on
  `router.listen` that quotes what this start wrote to router.log.
- `stop` sends SIGTERM, gives in-flight requests `grace` seconds, then SIGKILL; it signals only a
  process whose command line names this state directory's admin socket, so a pid the kernel
  recycled is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import SpecError, TransientDriverError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.drivers import DriverContext
from zerodown.paths import Paths
from zerodown.routers.proxy.client import ProxyRouter, router_command
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.router")

CHECK_EVERY = 1.0  # seconds between health checks of a running router
START_WAIT = 5.0  # seconds a new router has to answer on its admin socket
KILL_WAIT = 10.0  # seconds `stop` waits after SIGKILL before it gives up
LOG_TAIL = 3  # lines of router.log quoted when the router does not start


def create(ctx: DriverContext) -> BuiltinRouter:
    return BuiltinRouter(paths=ctx.paths, spec=ctx.spec)


class BuiltinRouter:
    def __init__(self, *, paths: Paths, spec: Spec) -> None:
        self.paths = paths
        self.spec = spec  # as it was when the controller started: listen addresses, timeouts
        self.client = ProxyRouter(str(paths.router_socket))
        self._checked_at = -math.inf
        self._child: subprocess.Popen[bytes] | None = None  # the router we started, to reap it

    # --- the process -------------------------------------------------------------------------

    async def start(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY:
            return
        # The socket file too: our pooled connection may outlive it, a new client could not.
        if self.paths.router_socket.is_socket() and await self.client.healthy():
            self._checked_at = now
            return
        running = self.pid()
        if running is not None:
            raise TransientDriverError(
                f"the router (pid {running}) runs but cannot be reached on its admin socket "
                f"{self.paths.router_socket}; traffic still flows through it. If this lasts, "
                "stop that process: the next pass starts a new router"
            )
        await self._spawn()
        self._checked_at = time.monotonic()

    async def _spawn(self) -> None:
        router = self.spec.router
        blue_green = self.spec.strategy.blue_green
        argv = router_command(
            listen=router.listen,
            preview_listen=blue_green.preview_listen if blue_green else None,
            admin_socket=str(self.paths.router_socket),
            state_file=str(self.paths.router_state),
            admin_listen=router.admin_listen,
            admin_token_file=str(self.paths.token_file) if router.admin_listen else None,
            header_timeout=router.header_timeout,
        )
        log_file = self.paths.logs / "router.log"
        with open(log_file, "ab") as out:
            written_before = out.tell()  # what this start writes is what explains a failure
            child = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._child = child
        self.paths.router_pid.write_text(str(child.pid))
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline and child.poll() is None:
            if await self.client.healthy():
                log.info("router started (pid %s) on %s", child.pid, router.listen)
                return
            await asyncio.sleep(0.05)
        with open(log_file, "rb") as written:
            written.seek(written_before)
            tail = written.read(4096).decode(errors="replace").strip().splitlines()[-LOG_TAIL:]
        raise SpecError(
            f"the router did not start on {router.listen}: {' | '.join(tail)}",
            field="router.listen",
        )

    def pid(self) -> int | None:
        """The pid of this state directory's router while it runs (never a recycled pid)."""
        try:
            pid = int(self.paths.router_pid.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = str(self.paths.router_socket).encode() in cmdline
        return pid if ours and _running(pid) else None

    async def stop(self, *, grace: float) -> None:
        pid = self.pid()
        if pid is None:
            self.paths.router_pid.unlink(missing_ok=True)
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + grace
        killed = False
        while _running(pid):
            if time.monotonic() > deadline + KILL_WAIT:
                log.warning("the router (pid %s) is still there after SIGKILL", pid)
                return
            if time.monotonic() > deadline and not killed:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.05)
        self.paths.router_pid.unlink(missing_ok=True)
        if self._child is not None and self._child.pid == pid:
            self._child.wait()  # reaped: a zombie is gone already, for the tests above

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

    async def close_tunnels(self, address: str) -> int:
        return await self.client.close_tunnels(address)

    async def stats(self) -> dict[str, ReleaseStats]:
        return await self.client.stats()

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        return await self.client.samples(release, since)

    async def aclose(self) -> None:
        """Close the admin connection; the router process keeps serving."""
        await self.client.aclose()


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")
