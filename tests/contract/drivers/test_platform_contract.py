"""The Platform contract (core/ports.py), for every platform driver."""

from __future__ import annotations

import pytest
from drivers_kit import PlatformUnderTest, run

from zerodown.core.errors import DriverError, PermanentDriverError
from zerodown.core.ports import Exited, Platform


def test_the_driver_is_a_platform(platform: PlatformUnderTest) -> None:
    assert isinstance(platform.platform, Platform)


def test_prepare_gets_a_release_ready_and_is_cheap_the_second_time(
    platform: PlatformUnderTest,
) -> None:
    async def scenario() -> None:
        await platform.platform.prepare(release="v1", run=platform.run)
        await platform.platform.prepare(release="v1", run=platform.run)  # a restarted controller

    run(scenario())


def test_launch_places_an_instance_that_runs_and_is_adopted(platform: PlatformUnderTest) -> None:
    async def scenario() -> None:
        p = platform.platform
        first = await p.launch(
            instance_id="shop-v1-aaaaaa", release="v1", run=platform.run, env={}, taken=()
        )
        second = await p.launch(
            instance_id="shop-v1-bbbbbb",
            release="v1",
            run=platform.run,
            env={"X": "1"},
            taken={first.address},
        )
        assert first.address != second.address and first.handle != second.handle
        host, _, port = first.address.rpartition(":")
        assert host and port.isdigit()
        assert await p.observe(instance_id="shop-v1-aaaaaa", handle=first.handle) is None
        adopted = await p.adopt()
        assert adopted["shop-v1-aaaaaa"] == first and adopted["shop-v1-bbbbbb"] == second
        assert isinstance(await p.logs(instance_id="shop-v1-aaaaaa", lines=5), str)

    run(scenario())


def test_stop_ends_the_instance_and_always_returns(platform: PlatformUnderTest) -> None:
    async def scenario() -> None:
        p = platform.platform
        placed = await p.launch(
            instance_id="shop-v1-aaaaaa", release="v1", run=platform.run, env={}, taken=()
        )
        how = await p.stop(
            instance_id="shop-v1-aaaaaa", handle=placed.handle, stop_signal="SIGTERM", grace=5
        )
        assert how and isinstance(how, str)
        assert isinstance(
            await p.observe(instance_id="shop-v1-aaaaaa", handle=placed.handle), Exited
        )
        assert "shop-v1-aaaaaa" not in await p.adopt()
        again = await p.stop(
            instance_id="shop-v1-aaaaaa", handle=placed.handle, stop_signal="SIGTERM", grace=5
        )
        assert again == "already gone"

    run(scenario())


def test_a_handle_that_no_longer_names_the_instance_is_never_acted_on(
    platform: PlatformUnderTest,
) -> None:
    async def scenario() -> None:
        p = platform.platform
        placed = await p.launch(
            instance_id="shop-v1-aaaaaa", release="v1", run=platform.run, env={}, taken=()
        )
        stale = platform.stale(placed.handle)
        assert isinstance(await p.observe(instance_id="shop-v1-aaaaaa", handle=stale), Exited)
        how = await p.stop(
            instance_id="shop-v1-aaaaaa", handle=stale, stop_signal="SIGKILL", grace=1
        )
        assert how == "already gone"
        with pytest.raises(DriverError):
            await p.exec(instance_id="shop-v1-aaaaaa", handle=stale, argv=["true"], timeout=5)
        assert await p.observe(instance_id="shop-v1-aaaaaa", handle=placed.handle) is None

    run(scenario())


def test_exec_runs_where_the_instance_runs(platform: PlatformUnderTest) -> None:
    async def scenario() -> None:
        p = platform.platform
        placed = await p.launch(
            instance_id="shop-v1-aaaaaa", release="v1", run=platform.run, env={}, taken=()
        )
        ok = await p.exec(
            instance_id="shop-v1-aaaaaa", handle=placed.handle, argv=["true"], timeout=5
        )
        failed = await p.exec(
            instance_id="shop-v1-aaaaaa", handle=placed.handle, argv=["false"], timeout=5
        )
        assert ok.code == 0 and failed.code != 0

    run(scenario())


def test_a_release_that_cannot_start_is_a_permanent_error(platform: PlatformUnderTest) -> None:
    async def scenario() -> None:
        with pytest.raises(PermanentDriverError, match="not found"):
            await platform.platform.launch(
                instance_id="shop-v1-aaaaaa",
                release="v1",
                run=platform.cannot_start(),
                env={},
                taken=(),
            )

    run(scenario())
