"""The tcp and exec probes against real processes: what passes, what fails, and what it says.

The http probe is exercised by every deploy test; these two are the ones no scenario uses.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract.drivers.drivers_kit import context
from zerodown import drivers
from zerodown.core.model import Instance
from zerodown.probes.checks import PlatformProber
from zerodown.spec.model import ProbeSpec, RunSpec, TcpCheck

pytestmark = pytest.mark.anyio

# Listens on PORT, and answers nothing: enough for a tcp probe, and an exec probe's working
# directory and environment are the instance's.
LISTENER = (
    "import os, socket, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\n"
    "open('started', 'w').write(os.environ['PORT'])\n"
    "time.sleep(60)\n"
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[PlatformProber, Instance]]:
    platform = drivers.platforms.create("local", context(tmp_path))
    workdir = tmp_path / "app"
    workdir.mkdir()
    run = RunSpec(command=[sys.executable, "-c", LISTENER], workdir=str(workdir))
    placement = await platform.launch(
        instance_id="shop-v1-1", release="v1", run=run, env={}, taken=()
    )
    instance = Instance(
        id="shop-v1-1",
        release="v1",
        address=placement.address,
        launched_at=0.0,
        handle=placement.handle,
    )
    await wait_listening(placement.address)
    yield PlatformProber(platform), instance
    await platform.stop(
        instance_id=instance.id, handle=placement.handle, stop_signal="SIGKILL", grace=1
    )
    await platform.aclose()


async def wait_listening(address: str) -> None:
    host, _, port = address.rpartition(":")
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def test_tcp_probe_passes_on_an_open_port_and_names_a_closed_one(
    world: tuple[PlatformProber, Instance],
) -> None:
    prober, instance = world
    port = int(instance.address.rpartition(":")[2])
    result = await prober.check(ProbeSpec(tcp=TcpCheck()), instance)
    assert result.ok and result.message == f"tcp {port} open"

    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        other = closed.getsockname()[1]
        result = await prober.check(ProbeSpec(tcp=TcpCheck(port=other)), instance)
    assert not result.ok and result.message == f"tcp {other}: connection refused"


async def test_exec_probe_runs_in_the_instance_and_reports_its_exit(
    world: tuple[PlatformProber, Instance],
) -> None:
    prober, instance = world
    port = instance.address.rpartition(":")[2]
    # In the instance's directory, with its environment:
    ok = await prober.check(
        ProbeSpec(exec=["sh", "-c", 'test "$(cat started)" = "$PORT" && echo fine']), instance
    )
    assert ok.ok and ok.message == "exit 0: fine", ok
    assert port in (await prober.check(ProbeSpec(exec=["cat", "started"]), instance)).message

    failed = await prober.check(ProbeSpec(exec=["sh", "-c", "echo not yet >&2; exit 3"]), instance)
    assert not failed.ok and failed.message == "exit 3: not yet", failed

    hung = await prober.check(ProbeSpec(exec=["sleep", "30"], timeout=0.3), instance)
    assert not hung.ok and hung.message == "timed out after 0.3s", hung

    missing = await prober.check(ProbeSpec(exec=["/nonexistent/check"]), instance)
    assert not missing.ok and "No such file" in missing.message, missing


async def test_exec_probe_of_an_instance_not_launched_or_gone(
    world: tuple[PlatformProber, Instance],
) -> None:
    prober, instance = world
    unlaunched = Instance(id="shop-v1-2", release="v1", address=instance.address, launched_at=0)
    result = await prober.check(ProbeSpec(exec=["true"]), unlaunched)
    assert not result.ok and result.message == "not launched yet"

    pid, _, ticks = (instance.handle or "").partition(":")
    stale = Instance(
        id=instance.id,
        release="v1",
        address=instance.address,
        launched_at=0,
        handle=f"{pid}:{int(ticks) + 1}",  # the same pid started at another time: not ours
    )
    result = await prober.check(ProbeSpec(exec=["true"]), stale)
    assert not result.ok and "is not running" in result.message, result
