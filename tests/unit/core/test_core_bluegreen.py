"""Blue-green rollouts in the simulated world: the preview, the one-change switch (automatic, after
a delay, or by a person), pre- and post-promotion analysis, the warm previous environment and
rollback inside and after `scale_down_delay`, and releases that never deserve the switch.

sim.World checks the rules of the rollout after every pass (among them: the previous environment
is not retired within scale_down_delay of the switch).
"""

from __future__ import annotations

from typing import Any

import pytest
from sim import FAILED, HEALTH_TEMPLATE, INCONCLUSIVE, PASSED, World, traffic_shares

from zerodown.core.model import CheckState, RolloutPhase
from zerodown.spec.model import Spec

PROGRESSING, PAUSED = RolloutPhase.PROGRESSING, RolloutPhase.PAUSED
COMPLETED, ABORTED, FAILED_PHASE = RolloutPhase.COMPLETED, RolloutPhase.ABORTED, RolloutPhase.FAILED
HEALTH = {"templates": ["health"]}
PREVIEW = "127.0.0.1:8081"


def spec(instances: int = 3, **blue_green: Any) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "instances": instances,
            "run": {"command": ["app"]},
            "analysis": {"templates": HEALTH_TEMPLATE},
            "strategy": {"blue_green": blue_green},
        }
    )


def started(s: Spec, **outcomes: tuple[CheckState, str]) -> World:
    """v1 serving at full size, v2 just deployed as the green environment."""
    world = World(spec=s, outcomes=dict(outcomes))
    world.deploy("v1")
    world.run_until(lambda: world.status.stable == "v1")
    world.deploy("v2")
    return world


def switched(world: World) -> bool:
    return world.status.rollout.switched_at is not None


def ready_at(world: World, release: str) -> float:
    """When the last instance of `release` became ready."""
    times = [i.ready_since for i in world.instances.values() if i.release == release]
    assert times and None not in times
    return max(t for t in times if t is not None)


def public_tables(world: World) -> list[dict[str, float]]:
    """The public traffic split of every table the router was given, without repeats."""
    seen: list[dict[str, float]] = []
    for table in world.tables:
        shares = traffic_shares(table)
        if not seen or seen[-1] != shares:
            seen.append(shares)
    return seen


# --- preview and switch ---------------------------------------------------------------------


def test_green_is_on_the_preview_listener_only_until_all_of_it_is_ready_then_switches_once():
    world = started(spec(preview_listen=PREVIEW))
    world.ready_after = 3
    world.tick()
    assert len(world.of("v2")) == 3  # the whole environment at once
    assert world.applied.preview == "v2" and world.shares() == {"v1": 100}
    world.run_until(lambda: switched(world))
    assert world.now == ready_at(world, "v2")  # in the pass that saw the last one ready
    assert world.shares() == {"v2": 100} and world.applied.preview is None
    assert world.phase is COMPLETED and world.status.stable == "v2"
    assert public_tables(world)[-2:] == [{"v1": 100}, {"v2": 100}]  # one change, no mix
    assert [r.message for r in world.records if r.kind == "switch"] == [
        "all traffic from v1 to v2 in one route change"
    ]


def test_without_auto_promote_the_ready_green_waits_for_a_person():
    world = started(spec(preview_listen=PREVIEW, auto_promote=False))
    world.run_until(lambda: world.phase is PAUSED)
    assert world.status.rollout.pause_reason == (
        f"v2 is ready on {PREVIEW}; run `zerodown promote` to switch"
    )
    world.run(3600, dt=60)
    assert not switched(world) and world.shares() == {"v1": 100}
    assert world.serving("v2") == 3 and world.applied.preview == "v2"
    world.promote()
    world.tick()
    assert world.shares() == {"v2": 100} and world.phase is COMPLETED


def test_promote_before_green_is_ready_switches_as_soon_as_it_is():
    world = started(spec(auto_promote=False))
    world.ready_after = 5
    world.tick()
    world.promote()
    world.run_until(lambda: switched(world))
    assert world.now == ready_at(world, "v2")


def test_auto_promote_after_switches_without_a_person_but_not_before_ready():
    world = started(spec(auto_promote=False, auto_promote_after="10s"))
    world.ready_after = 3
    world.run_until(lambda: switched(world))
    assert world.phase is COMPLETED
    assert not any(r.kind == "pause" for r in world.records)


@pytest.mark.parametrize("ready_after", [1, 20])
def test_auto_promote_after_counts_from_when_green_is_ready(ready_after):
    world = started(spec(auto_promote_after="10s"))
    world.ready_after = ready_after
    world.run_until(lambda: switched(world))
    assert world.status.rollout.switched_at - ready_at(world, "v2") == 10


def test_auto_promote_after_longer_than_the_progress_deadline():
    world = started(spec(auto_promote_after="15m"))
    world.run(1000, dt=5)
    assert world.phase is COMPLETED, world.status.rollout.reason


def test_a_paused_rollout_does_not_switch_until_resumed():
    world = started(spec())
    world.pause()
    world.run(10)
    assert not switched(world) and world.phase is PAUSED
    world.resume()
    world.run_until(lambda: world.phase is COMPLETED)


# --- analysis around the switch -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "phase", "public"),
    [(PASSED, COMPLETED, "v2"), (FAILED, ABORTED, "v1"), (INCONCLUSIVE, PAUSED, "v1")],
)
def test_pre_promotion_analysis_decides_the_switch(outcome, phase, public):
    world = started(spec(pre_promotion_analysis=HEALTH))
    world.run(5)
    checks = world.status.rollout.checks
    assert list(checks) == ["analysis:pre"] and world.serving("v2") == 3
    assert not switched(world) and world.shares() == {"v1": 100}
    world.outcomes["analysis:pre"] = (outcome, "errors: 0.2")
    world.tick()
    assert world.phase is phase
    assert world.shares() == {public: 100}
    if outcome is FAILED:
        assert world.status.rollout.reason == "analysis:pre: errors: 0.2"
        assert world.of("v2") == [] and world.applied.preview is None
        assert all("v2" not in shares for shares in public_tables(world))


def test_pre_promotion_analysis_starts_only_once_green_is_all_ready():
    world = started(spec(pre_promotion_analysis=HEALTH))
    world.ready_after = 3
    world.run_until(lambda: "analysis:pre" in world.status.rollout.checks)
    assert world.now == ready_at(world, "v2") and world.serving("v2") == 3


@pytest.mark.parametrize("decision", ["promote", "abort"])
def test_a_person_decides_an_inconclusive_pre_promotion_analysis(decision):
    world = started(spec(pre_promotion_analysis=HEALTH), **{"analysis:pre": (INCONCLUSIVE, "")})
    world.run_until(lambda: world.phase is PAUSED)
    getattr(world, decision)()
    world.tick()
    assert world.phase is (COMPLETED if decision == "promote" else ABORTED)
    assert world.shares() == {"v2" if decision == "promote" else "v1": 100}


@pytest.mark.parametrize(
    ("outcome", "phase", "public"),
    [(PASSED, COMPLETED, "v2"), (FAILED, ABORTED, "v1"), (INCONCLUSIVE, PAUSED, "v2")],
)
def test_post_promotion_analysis_keeps_blue_warm_until_it_decides(outcome, phase, public):
    world = started(spec(post_promotion_analysis=HEALTH))
    world.run_until(lambda: switched(world))
    world.run(30)
    assert world.phase is PROGRESSING and world.shares() == {"v2": 100}
    assert world.serving("v1") == 3  # blue warm while the analysis runs
    launched = len(world.launched)
    world.outcomes["analysis:post"] = (outcome, "p99 doubled")
    world.tick()
    assert world.phase is phase and world.shares() == {public: 100}
    assert len(world.launched) == launched  # switching back needs no new instance
    if outcome is INCONCLUSIVE:
        world.abort()
        world.tick()
        assert world.shares() == {"v1": 100}


def test_a_green_instance_failing_after_the_switch_sends_traffic_back_to_blue_at_once():
    world = started(spec(post_promotion_analysis=HEALTH))
    world.run_until(lambda: switched(world))
    victim = world.of("v2")[0]
    world.fail_instance(victim)
    world.tick()
    assert world.phase is FAILED_PHASE and world.shares() == {"v1": 100}
    assert world.status.rollout.reason == f"instance {victim} of v2: exited with 137"


# --- the warm previous environment and rollback ---------------------------------------------


@pytest.mark.parametrize(("delay", "seconds"), [("0s", 0), ("10s", 10), (None, 30)])
def test_blue_stays_warm_for_scale_down_delay_then_leaves(delay, seconds):
    extra = {} if delay is None else {"scale_down_delay": delay}
    world = started(spec(**extra))
    world.run_until(lambda: world.phase is COMPLETED)
    switch = world.status.rollout.switched_at
    world.run_until(lambda: world.of("v1") == [])
    assert world.now - switch == seconds
    assert world.serving("v2") == 3


def test_rollback_inside_scale_down_delay_is_one_route_change():
    world = started(spec(scale_down_delay="60s"))
    world.run_until(lambda: world.phase is COMPLETED)
    world.run(20)
    launched, tables = len(world.launched), len(world.tables)
    world.started_checks.clear()
    world.rollback()
    world.tick()
    rollout = world.status.rollout
    assert (rollout.version, rollout.rollback, rollout.phase) == ("v1", True, COMPLETED)
    assert world.shares() == {"v1": 100} and world.status.stable == "v1"
    assert len(world.launched) == launched and len(world.tables) == tables + 1
    assert world.started_checks == []
    # and now v2 is the warm one, for the same delay
    world.run(59)
    assert world.serving("v2") == 3
    world.run(1)
    assert world.of("v2") == []


def test_rollback_after_scale_down_delay_starts_blue_again_then_switches():
    world = started(spec(scale_down_delay="10s", pre_promotion_analysis=HEALTH))
    world.outcomes["analysis:pre"] = (PASSED, "ok")
    world.run_until(lambda: world.phase is COMPLETED)
    world.run(15)
    assert world.of("v1") == []
    world.started_checks.clear()
    world.rollback()
    world.ready_after = 3
    world.tick()
    assert len(world.of("v1")) == 3 and world.shares() == {"v2": 100}
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.now == ready_at(world, "v1") and world.shares() == {"v1": 100}
    assert world.started_checks == []  # a rollback skips the pre-promotion analysis


# --- releases that never get the switch -----------------------------------------------------


def test_a_broken_green_is_never_switched_to():
    world = started(spec(preview_listen=PREVIEW))
    stable = world.of("v1")
    world.broken.add("v2")
    world.run(10)
    assert world.phase is FAILED_PHASE and "startup probe failed" in world.status.rollout.reason
    assert all("v2" not in shares for shares in public_tables(world))
    assert world.of("v1") == stable and world.of("v2") == []
    assert world.applied.preview is None and not switched(world)


def test_green_that_never_gets_ready_fails_at_the_progress_deadline():
    world = started(spec(progress_deadline="20s"))
    world.ready_after = 10_000
    world.run(25)
    assert world.phase is FAILED_PHASE
    assert "no progress for 20s" in world.status.rollout.reason
    assert world.of("v2") == [] and world.shares() == {"v1": 100}


@pytest.mark.parametrize("before_switch", [True, False])
def test_abort_puts_everything_back_on_blue_in_the_next_pass(before_switch):
    world = started(spec(auto_promote=not before_switch, post_promotion_analysis=HEALTH))
    world.run(5)
    assert switched(world) is not before_switch
    world.abort()
    world.tick()
    assert world.phase is ABORTED and world.shares() == {"v1": 100}
    assert world.applied.preview is None and world.of("v2") == []


def test_a_new_deploy_during_the_preview_supersedes_it():
    world = started(spec(auto_promote=False))
    world.run_until(lambda: world.phase is PAUSED)
    first = world.status.rollout.revision
    world.deploy("v3")
    world.tick()
    assert world.superseded == [first] and world.of("v2") == []
    assert world.applied.preview == "v3" and world.shares() == {"v1": 100}
    world.run_until(lambda: world.phase is PAUSED)
    world.promote()
    world.tick()
    assert world.status.stable == "v3" and world.shares() == {"v3": 100}


def test_a_new_deploy_while_blue_is_warm_retires_it_and_keeps_serving_green():
    world = started(spec(scale_down_delay="60s"))
    world.run_until(lambda: world.phase is COMPLETED)
    world.deploy("v3")
    world.tick()
    assert world.of("v1") == []  # nothing to roll back to by a switch any more: v2 serves
    assert world.shares() == {"v2": 100} and len(world.of("v3")) == 3
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.status.stable == "v3" and world.serving("v2") == 3  # now v2 is the warm one


def test_retry_after_a_failed_post_promotion_analysis_prepares_and_switches_again():
    world = started(spec(post_promotion_analysis=HEALTH), **{"analysis:post": (FAILED, "errors")})
    world.run_until(lambda: world.phase is ABORTED)
    world.run(2)
    world.outcomes["analysis:post"] = (PASSED, "fine now")
    world.retry()
    world.tick()
    assert not switched(world) and world.shares() == {"v1": 100}
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.shares() == {"v2": 100}
