"""The pipeline gates of the pure core, driven through the simulated world with scripted
check outcomes: what starts when, and what a failure does in the same pass."""

from __future__ import annotations

from typing import Any

from sim import FAILED, HEALTH_TEMPLATE, PASSED, World

from zerodown.core.model import CheckState, RolloutPhase
from zerodown.spec.model import Spec


def spec(**extra: Any) -> Spec:
    return Spec.model_validate(
        {"service": "shop", "instances": 2, "run": {"command": ["app"]}, **extra}
    )


def canary(*steps: dict[str, Any], **extra: Any) -> Spec:
    strategy = {"canary": {"steps": list(steps), **extra}}
    return spec(analysis={"templates": HEALTH_TEMPLATE}, strategy=strategy)


def started(s: Spec, **outcomes: tuple[CheckState, str]) -> World:
    world = World(spec=s, outcomes=dict(outcomes))
    world.deploy("v1")
    world.run(10)
    assert world.status.stable == "v1"
    return world


def test_a_failing_gate_starts_nothing():
    world = started(spec(gate={"command": ["pytest"]}), gate=(PASSED, "ok"))
    world.outcomes["gate"] = (FAILED, "3 tests failed")
    world.started_checks.clear()
    world.deploy("v2")
    world.run(5)
    assert world.status.rollout.phase is RolloutPhase.FAILED
    assert (
        "gate failed" in world.status.rollout.reason
        and "3 tests failed" in world.status.rollout.reason
    )
    assert {i.release for i in world.instances.values()} == {"v1"}


def test_gate_then_migration_then_launch():
    s = spec(gate={"command": ["pytest"]}, migrations={"database": "postgresql://x/db"})
    world = started(s, gate=(PASSED, "ok"), migrate=(PASSED, "no pending migration"))
    world.started_checks.clear()
    world.deploy("v2")
    world.run(10)
    assert world.started_checks[:2] == ["gate", "migrate"]
    assert world.status.stable == "v2"


def test_smoke_before_traffic_holds_the_new_release_out_of_routing():
    smoke = {"checks": [{"name": "home", "request": "GET /"}]}
    world = started(
        spec(smoke=smoke), **{"smoke:pre": (PASSED, "ok"), "smoke:post": (PASSED, "ok")}
    )
    world.outcomes["smoke:pre"] = (FAILED, "home: 500")
    world.started_checks.clear()
    world.deploy("v2")
    for _ in range(20):
        world.tick()
        assert "v2" not in world.weights()
    assert world.status.rollout.phase is RolloutPhase.FAILED
    assert "smoke:pre failed" in world.status.rollout.reason
    world.run(5)
    assert {i.release for i in world.instances.values()} == {"v1"}


def test_smoke_after_promotion_failing_aborts_back_to_stable():
    smoke = {"checks": [{"name": "home", "request": "GET /"}]}
    s = canary({"set_weight": 50}, {"set_weight": 100})
    s = s.model_copy(update={"smoke": spec(smoke=smoke).smoke})
    world = started(s, **{"smoke:pre": (PASSED, "ok"), "smoke:post": (PASSED, "ok")})
    world.outcomes["smoke:post"] = (FAILED, "home: 503")
    world.deploy("v2")
    world.run(6)
    assert world.status.rollout.phase is RolloutPhase.ABORTED
    assert world.status.stable == "v1" and world.weights() == {"v1": 2}


def test_abort_reverts_flags_and_rolls_the_migration_back_once_the_release_is_gone():
    s = canary(
        {"set_flag": {"key": "new-checkout", "rollout": "10%"}},
        {"set_weight": 20},
        {"pause": {}},
    )
    s = s.model_copy(
        update={"migrations": spec(migrations={"database": "postgresql://x"}).migrations}
    )
    world = started(s, migrate=(PASSED, "started"), **{"flag:step-1": (PASSED, "changed")})
    world.deploy("v2")
    world.run(3)
    assert world.status.rollout.checks["flag:step-1"].state is PASSED
    world.abort()
    world.tick()
    checks = world.status.rollout.checks
    assert "flags:revert" in checks
    assert "migrate:rollback" not in checks  # v2 instances still draining in this pass
    world.run(2)
    assert "migrate:rollback" in world.status.rollout.checks


def test_quiet_period_asks_for_the_contract_once_only_the_new_release_runs():
    s = spec(migrations={"database": "postgresql://x", "quiet_period": "5m"})
    world = started(s, migrate=(PASSED, "started"))
    world.deploy("v2")
    for _ in range(40):
        world.tick()
        if world.status.stable == "v2":
            break
    old_left = any(i.release == "v1" for i in world.instances.values())
    assert ("migrate:contract" in world.status.rollout.checks) is not old_left
    world.run(3)
    assert "migrate:contract" in world.status.rollout.checks


def test_without_quiet_period_the_contract_waits_for_the_next_deploy():
    world = started(spec(migrations={"database": "postgresql://x"}), migrate=(PASSED, "started"))
    world.deploy("v2")
    world.run(10)
    assert world.status.stable == "v2"
    assert "migrate:contract" not in world.status.rollout.checks
