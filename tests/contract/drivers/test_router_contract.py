"""The Router and RouterStats contract (core/ports.py), for every router driver."""

from __future__ import annotations

import pytest
from drivers_kit import RouterUnderTest, run

from zerodown.core.errors import TransientDriverError
from zerodown.core.ports import Router, RouterStats
from zerodown.core.routes import Backend, Pool, RouteTable


def table(generation: int, *backends: tuple[str, str]) -> RouteTable:
    by_release: dict[str, list[Backend]] = {}
    for release, address in backends:
        by_release.setdefault(release, []).append(Backend(address, f"shop-{release}-{address}"))
    pools = tuple(Pool(r, 100 // len(by_release), tuple(b)) for r, b in by_release.items())
    return RouteTable(generation=generation, pools=pools)


def test_the_driver_is_a_router_with_stats(router: RouterUnderTest) -> None:
    assert isinstance(router.router, Router) and isinstance(router.router, RouterStats)


def test_start_is_idempotent_and_stop_stops(router: RouterUnderTest) -> None:
    async def scenario() -> None:
        r = router.router
        await r.start()
        await r.start()
        assert await r.healthy()
        await r.stop(grace=1)
        assert not await r.healthy()
        with pytest.raises(TransientDriverError):
            await r.apply(table(1))

    run(scenario())


def test_apply_is_read_back_verified_and_idempotent(router: RouterUnderTest) -> None:
    async def scenario() -> None:
        r = router.router
        await r.start()
        a, b = router.backend(), router.backend()
        first = table(1, ("v1", a), ("v2", b))
        await r.apply(first)
        await r.apply(first)  # the table already running: nothing changes
        current = await r.table()
        assert current.generation == 1 and current.same_routing(first)
        assert await r.verify(first) is True
        assert await r.verify(table(2, ("v1", a))) is False
        loads = await r.backends()
        assert {loads[a].release, loads[b].release} == {"v1", "v2"}
        assert loads[a].inflight == 0
        second = table(2, ("v2", b))
        await r.apply(second)
        assert (await r.table()).same_routing(second)
        assert a not in (await r.table()).addresses()

    run(scenario())


def test_stats_and_samples_are_there_without_traffic(router: RouterUnderTest) -> None:
    async def scenario() -> None:
        r = router.router
        assert isinstance(r, RouterStats)
        await router.router.start()
        await router.router.apply(table(1, ("v1", router.backend())))
        assert isinstance(dict(await r.stats()), dict)
        assert list(await r.samples("v1", 0.0)) == []

    run(scenario())
