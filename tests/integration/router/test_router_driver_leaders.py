"""The built-in router driver when the controller that starts the router is not the one that
stops it (two controllers on one store, issue 16): a leader that loses its lease while its
router is starting is cancelled before it records the router's pid; the next leader adopts the
router that answers, and its `stop` (what `zerodown down` ends with) must stop that process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from support.workspace import Workspace
from zerodown.paths import Paths
from zerodown.routers.proxy.driver import BuiltinRouter
from zerodown.spec.load import load_spec

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _routers(admin: Path) -> list[int]:
    """Pids of the processes serving this admin socket (a waiting standby is not one)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(admin).encode() in argv and b"--standby" not in argv and state != "Z":
            found.append(int(proc.name))
    return found


async def test_the_next_leader_stops_the_router_a_cancelled_start_left_unrecorded(
    tmp_path: Path,
) -> None:
    ws = Workspace.create(tmp_path)
    spec, paths = load_spec(ws.spec_file), Paths.for_spec(ws.spec_file)
    paths.ensure()
    losing, leader = BuiltinRouter(paths=paths, spec=spec), BuiltinRouter(paths=paths, spec=spec)
    try:
        starting = asyncio.create_task(losing.start())
        while not losing._children:  # spawned: the start now waits for it to answer
            await asyncio.sleep(0)
        starting.cancel()  # the lease is lost: the engine's task is cancelled mid-start
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert not paths.router_pid.exists()  # it never recorded the router it started
        await losing.aclose()  # a standby now; the router serves on
        (pid,) = _routers(paths.router_socket)

        for _ in range(3000):
            if await leader.healthy():
                break
            await asyncio.sleep(0.01)
        await leader.start()  # the new leader finds the router answering: it adopts it
        assert _routers(paths.router_socket) == [pid]  # adopted, not doubled
        await leader.stop(grace=2)  # the end of `zerodown down`
        assert _routers(paths.router_socket) == []
    finally:
        await leader.aclose()
        await losing.stop(grace=0)  # closes its copies of the listening sockets
        for left in _routers(paths.router_socket):
            os.kill(left, 9)
