"""The engine on the fake world (tests/support/fake_drivers): the real controller, engine and
core, a router and a platform that run nothing, a clock that moves only when told. Each test is a
rollout of minutes of its own time, driven pass by pass, in milliseconds.

What holds after every pass (FakeService.check_rules): the router sends only to serving
instances, and no instance is stopped while the router's table still holds it."""

from __future__ import annotations

from dataclasses import replace

from fake_world_kit import on_fake_world

from support.fake_service import FakeService, fake_spec
from zerodown import drivers
from zerodown.core.errors import PermanentDriverError
from zerodown.core.model import Instance, RolloutPhase


def test_the_fake_drivers_are_found_as_a_plug_in_would_be() -> None:
    assert "fake" in drivers.routers.kinds() and "builtin" in drivers.routers.kinds()
    assert "fake" in drivers.platforms.kinds() and "local" in drivers.platforms.kinds()
    assert "fake" in drivers.stores.kinds() and "sqlite" in drivers.stores.kinds()


@on_fake_world()
async def test_rolling_replaces_every_instance_one_at_a_time(service: FakeService) -> None:
    await service.up("v1")
    first = {i.id for i in service.world.running("v1")}
    assert len(first) == 2 and service.world.router_starts == 1
    service.deploy("v2")
    await service.run_until(lambda: service.status().stable == "v2", what="v2 stable")
    await service.run_until(lambda: not service.world.running("v1"), what="v1 gone")
    assert service.status().rollout.phase is RolloutPhase.COMPLETED
    assert set(service.world.stopped) == first
    assert len(service.world.running("v2")) == 2
    # max_surge 1: never more than three instances at once
    peak = max(len({b.address for p in t.pools for b in p.backends}) for t in service.world.tables)
    assert peak <= 3
    assert service.world.routed_releases() == {"v2"}


def canary_share(service: FakeService, release: str) -> int:
    """The percentage of weighted traffic `release` gets now."""
    table = service.world.table
    assert table is not None
    total = sum(p.weight for p in table.pools)
    return round(100 * sum(p.weight for p in table.pools if p.release == release) / total)


CANARY = fake_spec(
    instances=4,
    strategy={
        "canary": {
            "steps": [
                {"set_weight": 25},
                {"pause": {"duration": "30s"}},
                {"set_weight": 50},
                {"pause": {}},
            ]
        }
    },
)


@on_fake_world(CANARY)
async def test_canary_steps_wait_their_pause_then_wait_for_promote(service: FakeService) -> None:
    await service.up("v1")
    service.deploy("v2")
    await service.run_until(lambda: canary_share(service, "v2") == 25, what="weight 25")
    at_25 = service.clock.now()
    assert len(service.world.running("v2")) == 1  # canary_scale follows the weight
    await service.run_until(lambda: canary_share(service, "v2") == 50, what="weight 50")
    assert service.clock.now() - at_25 >= 30
    await service.run_until(
        lambda: service.status().rollout.phase is RolloutPhase.PAUSED, what="the last pause"
    )
    for _ in range(40):  # an indefinite pause holds, however long
        await service.tick(1.0)
    assert canary_share(service, "v2") == 50 and len(service.world.running("v1")) == 4
    service.controller.promote(full=False, who="test")
    await service.run_until(lambda: service.status().stable == "v2", what="v2 stable")
    await service.run_until(lambda: not service.world.running("v1"), what="v1 gone")
    assert len(service.world.running("v2")) == 4


BLUE_GREEN = fake_spec(strategy={"blue_green": {"auto_promote": False, "scale_down_delay": "30s"}})


@on_fake_world(BLUE_GREEN)
async def test_blue_green_previews_then_switches_and_keeps_blue_warm(service: FakeService) -> None:
    await service.up("v1")
    service.deploy("v2")
    await service.run_until(
        lambda: service.world.table.preview == "v2", what="green on the preview listener"
    )
    assert service.world.routed_releases() == {"v1"}
    assert len(service.world.running("v2")) == 2 and len(service.world.running("v1")) == 2
    service.controller.promote(full=False, who="test")
    await service.run_until(lambda: service.world.routed_releases() == {"v2"}, what="the switch")
    switched = service.clock.now()
    await service.run_until(lambda: not service.world.running("v1"), what="blue retired")
    assert service.clock.now() - switched >= 30  # scale_down_delay: rollback is one switch


@on_fake_world()
async def test_a_restarted_controller_adopts_instead_of_launching(service: FakeService) -> None:
    await service.up("v1")
    launched = set(service.world.instances)
    store = service.controller.store
    # The controller died between a launch and writing down its placement ...
    lost = service.instances("v1")[0]
    store.put_instance("shop", replace(lost, handle=None, address=""))
    # ... and between writing down a launch and making it.
    never = Instance(id="shop-v1-000000", release="v1", address="", launched_at=lost.launched_at)
    store.put_instance("shop", never)
    await service.restart()
    for _ in range(8):
        await service.tick()
    assert set(service.world.instances) == launched  # nothing launched twice
    assert service.world.router_starts == 1  # the router kept running
    found = {i.id: i for i in service.instances()}
    assert never.id not in found
    placed = service.world.instances[lost.id]
    assert (found[lost.id].address, found[lost.id].handle) == (placed.address, placed.handle)
    assert all(i.serving for i in found.values()) and len(found) == 2


def test_an_instance_stored_with_a_pid_reads_back_without_a_handle() -> None:
    doc = {"id": "shop-v1-aaaaaa", "release": "v1", "address": "127.0.0.1:1", "launched_at": 1.0}
    assert Instance.from_json({**doc, "pid": 4242}).handle is None
    assert Instance.from_json({**doc, "handle": "4242:77"}).handle == "4242:77"


@on_fake_world()
async def test_an_instance_that_exits_is_replaced(service: FakeService) -> None:
    await service.up("v1")
    victim = service.instances("v1")[0].id
    service.world.crash(victim)
    await service.run_until(
        lambda: (
            victim not in {i.id for i in service.instances()}
            and sum(i.serving for i in service.instances()) == 2
        ),
        what="a replacement",
    )
    assert any("killed by SIGKILL" in m for m in service.events())


@on_fake_world()
async def test_a_release_that_cannot_launch_fails_and_the_old_one_serves(
    service: FakeService,
) -> None:
    await service.up("v1")
    service.world.launch_error = PermanentDriverError("cannot start 'app': not found")
    service.deploy("v2")
    await service.run_until(
        lambda: service.status().rollout.phase is RolloutPhase.FAILED, what="failed"
    )
    assert "cannot start 'app': not found" in service.status().rollout.reason
    assert service.status().stable == "v1" and service.world.routed_releases() == {"v1"}
    assert service.engine.health.last_error is None  # a release's fault, not the engine's
    await service.run_until(lambda: not service.instances("v2"), what="v2 records gone")


@on_fake_world()
async def test_a_launch_that_raises_anything_fails_the_rollout_too(service: FakeService) -> None:
    await service.up("v1")
    service.world.launch_error = OSError(7, "Argument list too long")
    service.deploy("v2")
    await service.run_until(
        lambda: service.status().rollout.phase is RolloutPhase.FAILED, what="failed"
    )
    assert "OSError: [Errno 7] Argument list too long" in service.status().rollout.reason
    assert service.world.routed_releases() == {"v1"}


@on_fake_world(fake_spec(strategy={"rolling": {"max_surge": 1, "max_unavailable": 1}}))
async def test_a_release_that_cannot_be_prepared_fails_before_anything_starts_or_leaves(
    service: FakeService,
) -> None:
    await service.up("v1")
    assert service.world.prepared == ["v1"]
    old, tables = {i.id for i in service.world.running("v1")}, len(service.world.tables)
    service.world.prepare_error = PermanentDriverError(
        "image localhost/shop:v2 is not known: manifest unknown"
    )
    service.deploy("v2")
    await service.run_until(
        lambda: service.status().rollout.phase is RolloutPhase.FAILED, what="failed"
    )
    reason = service.status().rollout.reason
    assert reason == "cannot prepare it: image localhost/shop:v2 is not known: manifest unknown"
    assert any(reason in m for m in service.events("failed"))
    # max_unavailable 1 would let a pass retire an old instance first: none did
    assert not service.instances("v2") and service.world.stopped == []
    assert {i.id for i in service.world.running("v1")} == old
    assert len(service.world.tables) == tables and service.world.routed_releases() == {"v1"}
    assert service.engine.health.last_error is None  # the release's fault, not the engine's
    service.world.prepare_error = None
    service.controller.retry(who="test")
    await service.run_until(lambda: service.status().stable == "v2", what="v2 stable")
    assert service.world.prepared == ["v1", "v2"]


@on_fake_world()
async def test_a_slow_preparation_holds_the_rollout_and_fails_no_pass(service: FakeService) -> None:
    await service.up("v1")
    service.engine.preparations.wait = 0.001  # the pass's own wait for it, in real seconds
    service.world.prepare_wait = lambda: service.clock.sleep(10)  # a pull of 10 s
    service.deploy("v2")
    for _ in range(20):  # 5 s
        await service.tick()
    assert not service.instances("v2") and service.world.stopped == []
    assert service.status().rollout.phase is RolloutPhase.PROGRESSING
    assert service.engine.health.last_error is None
    await service.run_until(lambda: service.status().stable == "v2", what="v2 stable")
    assert service.world.prepared == ["v1", "v2"]


@on_fake_world()
async def test_router_admin_gone_is_recorded_once_and_traffic_is_left_alone(
    service: FakeService,
) -> None:
    await service.up("v1")
    table = service.world.table
    service.world.router_reachable = False
    for _ in range(20):
        await service.tick()
    assert service.world.table == table
    assert service.engine.health.failures >= 20
    service.world.router_reachable = True
    await service.run_until(lambda: service.events("recovered"), what="recovered")
    errors = service.events("error")
    assert len(errors) == 1 and "admin API is unreachable" in errors[0], errors
    assert service.engine.health.failures == 0


@on_fake_world()
async def test_down_finishes_without_a_router(service: FakeService) -> None:
    await service.up("v1")
    service.world.router_reachable = False
    service.controller.down(who="test")
    await service.run_until(service.engine.stopped.is_set, what="down finished")
    assert not service.world.running()


@on_fake_world()
async def test_store_locked_mid_rollout_then_the_rollout_completes(service: FakeService) -> None:
    await service.up("v1")
    service.deploy("v2")
    await service.run_until(lambda: service.world.running("v2"), what="the first v2 launch")
    service.world.store_locked = True
    for _ in range(12):
        await service.tick()
    assert service.world.routed_releases() == {"v1"}  # no pass completed: routes stay
    service.world.store_locked = False
    await service.run_until(lambda: service.status().stable == "v2", what="v2 stable")
    errors = service.events("error")
    assert len(errors) == 1 and "database is locked" in errors[0], errors
    assert service.events("recovered")


@on_fake_world()
async def test_down_with_nothing_ever_deployed_finishes_at_once(service: FakeService) -> None:
    await service.tick()
    service.controller.down(who="test")
    await service.tick()
    assert service.engine.stopped.is_set() and not service.world.instances
