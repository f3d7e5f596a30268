from __future__ import annotations

from itertools import pairwise

import pytest
from sim import World

from zerodown.core.model import RolloutPhase
from zerodown.spec.model import Spec


def spec(instances: int = 3, **rolling: object) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "instances": instances,
            "run": {"command": ["app"]},
            "strategy": {"rolling": rolling or {"max_surge": 1, "max_unavailable": 0}},
        }
    )


def started(s: Spec, version: str = "v1") -> World:
    world = World(spec=s)
    world.deploy(version)
    world.run(10)
    assert world.status.stable == version
    assert world.status.rollout and world.status.rollout.phase is RolloutPhase.COMPLETED
    return world


@pytest.mark.parametrize(
    ("instances", "surge", "unavailable"),
    [(1, 1, 0), (2, 1, 0), (3, 1, 0), (4, "25%", "25%"), (5, 2, 1), (3, 0, 1), (4, "50%", 0)],
)
def test_rolling_update_keeps_capacity_and_surge_bounds(instances, surge, unavailable):
    s = spec(instances, max_surge=surge, max_unavailable=unavailable)
    world = started(s)
    world.deploy("v2")
    floor = max(1, instances - (unavailable if isinstance(unavailable, int) else instances // 4))
    surge_n = surge if isinstance(surge, int) else -(-instances * int(surge[:-1]) // 100)
    for _ in range(60):
        world.tick(0.5)
        live = sum(1 for i in world.instances.values() if i.live)
        assert live <= instances + surge_n, (live, instances, surge_n)
        assert world.serving() >= floor
    assert world.status.stable == "v2"
    assert world.status.rollout.phase is RolloutPhase.COMPLETED
    assert {i.release for i in world.instances.values()} == {"v2"}
    assert world.serving("v2") == instances


def test_broken_release_fails_before_any_old_instance_leaves():
    world = started(spec(3))
    world.broken.add("v2")
    old = set(world.instances)
    world.deploy("v2")
    world.run(10)
    assert world.status.rollout.phase is RolloutPhase.FAILED
    assert "startup probe failed" in world.status.rollout.reason
    assert world.status.stable == "v1"
    assert set(world.instances) == old  # no v1 instance ever left
    assert all(not r.message.startswith("retire v1") for r in world.records)


def test_min_ready_holds_old_instances_until_new_ones_have_stayed_ready():
    world = started(spec(2, max_surge=1, max_unavailable=0, min_ready="5s"))
    world.deploy("v2")
    world.run(4)
    assert world.serving("v1") == 2
    world.run(30)
    assert world.status.stable == "v2"


def test_a_failed_instance_is_replaced_in_steady_state():
    world = started(spec(2))
    victim = next(iter(world.instances))
    world.instances[victim] = world.instances[victim].__class__(
        **{**world.instances[victim].to_json(), "phase": "running", "failure": "exited with 137"}
    )
    world.tick()
    assert victim not in world.instances
    world.run(3)
    assert world.serving("v1") == 2


def test_progress_deadline_fails_a_release_that_never_gets_ready():
    s = spec(2, max_surge=1, max_unavailable=0, progress_deadline="10s")
    world = started(s)
    world.ready_after = 10_000
    world.deploy("v2")
    world.run(15)
    assert world.status.rollout.phase is RolloutPhase.FAILED
    assert "progress_deadline" in world.status.rollout.reason
    world.run(5)
    assert {i.release for i in world.instances.values()} == {"v1"}


def test_a_release_that_keeps_failing_is_restarted_with_a_growing_backoff():
    world = started(spec(1))
    world.broken.add("v1")  # every new instance fails its startup probe
    world.fail_instance(world.of("v1")[0])
    world.launched.clear()
    world.run(200)
    starts = [at for at, release in world.launched if release == "v1"]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # the first replacement at once, then 10 s, 20 s, 40 s, 80 s (plus the second it takes to fail)
    assert gaps[:4] == [11.0, 21.0, 41.0, 81.0], gaps
    assert any(
        "failed 3 times in a row: the next instance starts in 20s" in r.message
        for r in world.records
    )


def test_instances_failing_together_are_each_replaced_at_once():
    """Kubernetes backs off per container: two instances frozen at the same moment each get
    their first restart at once; only a failure beyond one per instance waits (chaos found the
    serving release empty for 10-20 s when the second replacement waited)."""
    world = started(spec(2))
    first, second = world.of("v1")
    world.fail_instance(first)
    world.fail_instance(second)
    world.launched.clear()
    world.tick()
    assert [release for _, release in world.launched] == ["v1", "v1"]
    world.run_until(lambda: world.serving("v1") == 2, seconds=30)
    world.fail_instance(world.of("v1")[0])  # a third failure in a row: now the backoff
    world.launched.clear()
    world.run(5)
    assert world.launched == []
    assert any(
        "failed 3 times in a row: the next instance starts in 10s" in r.message
        for r in world.records
    )


def test_crashes_are_forgotten_after_ten_quiet_minutes():
    world = started(spec(1))
    for _ in range(3):
        world.fail_instance(world.of("v1")[0])
        world.run_until(lambda: world.serving("v1") == 1, seconds=120)
    assert world.status.crashes["v1"].count == 3
    world.run(601)
    world.fail_instance(world.of("v1")[0])
    world.tick()
    assert world.status.crashes["v1"].count == 1  # a fresh start: replaced at once
    assert world.launched[-1] == (world.now, "v1")
