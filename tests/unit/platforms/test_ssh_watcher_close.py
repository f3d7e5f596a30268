"""Closing the ssh platform's hosts stops their watcher, whatever the watcher was doing.

`Hosts.aclose` cancels the watcher (a task that checks each host every PING_EVERY seconds) and
waits for it. Two places swallowed that cancellation, and the watcher then went on checking
while `aclose` waited for it forever (the hosts tests hung so, in test_hosts_containers.py):
- Python 3.11's `asyncio.wait_for` returns the result instead of raising when the cancellation
  meets a result already in: a ping's answer read in the same pass of the loop;
- `HostLink._close` waited for the channel's reader under `suppress(BaseException)`: a
  cancellation that came while the reader ended was taken for the reader's.
The host program is played by a stand-in; each test begins the close at the moment in question.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from zerodown.core.errors import TransientDriverError
from zerodown.core.ports import HostState
from zerodown.platforms.ssh.connection import HostLink
from zerodown.platforms.ssh.driver import Hosts
from zerodown.spec.model import Spec


class HostProgram:
    """Stands in for remote.py over the link's channel: each request gets `reply(link, id)`
    in the next pass of the loop."""

    def __init__(self, link: HostLink, reply: Callable[[HostLink, int], None]) -> None:
        self.link = link
        self.reply = reply
        self.stdin = self

    def write(self, line: str) -> None:
        rid = json.loads(line)["id"]
        asyncio.get_running_loop().call_soon(self.reply, self.link, rid)

    def close(self) -> None:
        pass


class Closing:
    """The hosts' close, begun from a callback; `went_on` is set if the watcher checks a host
    again after that."""

    def __init__(self, hosts: Hosts, link: HostLink) -> None:
        self.hosts = hosts
        self.task: asyncio.Task[None] | None = None
        self.begun = asyncio.Event()
        self.went_on = asyncio.Event()
        check = link.check

        async def checked() -> HostState:
            if self.task is not None:
                self.went_on.set()
            return await check()

        link.check = checked  # type: ignore[method-assign]

    def begin(self) -> None:
        self.task = asyncio.create_task(self.hosts.aclose())
        self.begun.set()

    async def outcome(self) -> None:
        await self.begun.wait()
        assert self.task is not None
        went_on = asyncio.create_task(self.went_on.wait())
        try:
            done, _ = await asyncio.wait([self.task, went_on], return_when=asyncio.FIRST_COMPLETED)
            assert self.task in done, "the watcher went on checking the host after the close"
            assert self.hosts.watcher is not None and self.hosts.watcher.cancelled()
        finally:
            went_on.cancel()
            if self.hosts.watcher is not None:
                self.hosts.watcher.cancel()  # (the watcher of a failed test)


def one_host(tmp_path: Path) -> Hosts:
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"]},
            "hosts": [{"name": "web1", "ssh": "root@192.0.2.250"}],
            # no such file: reconnecting fails at once, without the network
            "ssh": {"known_hosts": str(tmp_path / "known_hosts")},
        }
    )
    return Hosts(spec, state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)


def connect(link: HostLink, program: HostProgram, reader: asyncio.Task[None]) -> None:
    """As if connected: the stand-in program on the channel, and its reader."""
    link.loop = asyncio.get_running_loop()
    link.process = program  # type: ignore[assignment]
    link.reader = reader


@pytest.mark.anyio
async def test_close_stops_the_watcher_while_a_ping_is_answered(tmp_path: Path) -> None:
    hosts = one_host(tmp_path)
    link = hosts.links["web1"]
    closing = Closing(hosts, link)

    def pong(link: HostLink, rid: int) -> None:
        link.pending[rid].set_result({"id": rid, "result": "pong"})
        if closing.task is None:
            closing.begin()  # in the same pass as the answer

    connect(link, HostProgram(link, pong), asyncio.create_task(asyncio.Event().wait()))
    hosts._watch()
    await closing.outcome()


@pytest.mark.anyio
async def test_close_stops_the_watcher_while_it_drops_a_lost_channel(tmp_path: Path) -> None:
    hosts = one_host(tmp_path)
    link = hosts.links["web1"]
    closing = Closing(hosts, link)

    def lost(link: HostLink, rid: int) -> None:  # the ping fails: the watcher closes the link
        link.pending.pop(rid).set_exception(TransientDriverError("the connection was lost"))

    async def reader() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            closing.begin()  # while the watcher waits for this reader to end
            raise

    connect(link, HostProgram(link, lost), asyncio.create_task(reader()))
    hosts._watch()
    await closing.outcome()
