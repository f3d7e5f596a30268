"""Canary rollouts in the simulated world: weights and instance counts step by step, pauses,
analysis outcomes, header routes, the operator's commands, failures, supersede and rollback.

sim.World checks the rules of the rollout after every pass (routing only to ready instances, the
stable release at full size, weight 0 in the pass that ends a rollout, ...), so each test here
also proves those rules for the path it drives.
"""

from __future__ import annotations

from typing import Any

import pytest
from sim import FAILED, HEALTH_TEMPLATE, INCONCLUSIVE, PASSED, World

from zerodown.core.errors import StateError
from zerodown.core.model import CheckState, RolloutPhase
from zerodown.core.routes import Match, Sticky
from zerodown.spec.model import Spec

PROGRESSING, PAUSED = RolloutPhase.PROGRESSING, RolloutPhase.PAUSED
COMPLETED, ABORTED, FAILED_PHASE = RolloutPhase.COMPLETED, RolloutPhase.ABORTED, RolloutPhase.FAILED
ANALYSIS = {"analysis": {"templates": ["health"]}}
HEADER = {"set_header_route": {"header": "X-Canary", "value": "yes"}}
COOKIE = {"set_header_route": {"cookie": "beta", "value": "1"}}


def weight(percent: int) -> dict[str, Any]:
    return {"set_weight": percent}


def pause(duration: str | None = None) -> dict[str, Any]:
    return {"pause": {"duration": duration} if duration else {}}


def spec(*steps: dict[str, Any], instances: int = 4, **canary: Any) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "instances": instances,
            "run": {"command": ["app"]},
            "analysis": {"templates": HEALTH_TEMPLATE},
            "strategy": {"canary": {"steps": list(steps), **canary}},
        }
    )


def started(s: Spec, **outcomes: tuple[CheckState, str]) -> World:
    """v1 serving at full size, v2 just deployed as a canary."""
    world = World(spec=s, outcomes=dict(outcomes))
    world.deploy("v1")
    world.run_until(lambda: world.status.stable == "v1")
    world.deploy("v2")
    return world


def at_step(world: World, step: int, phase: RolloutPhase = PAUSED) -> None:
    world.run_until(
        lambda: (
            (world.status.rollout.step == step and world.phase is phase)
            or not world.status.rollout.active
        )
    )
    assert (world.status.rollout.step, world.phase) == (step, phase)


def trace(world: World, seconds: float = 120) -> list[tuple[int, int]]:
    """(v2's share of traffic, live v2 instances) at each change, until the rollout ends."""
    seen = [(round(world.shares().get("v2", 0)), len(world.of("v2")))]
    for _ in range(int(seconds / 0.5)):
        if not world.status.rollout.active:
            break
        world.tick()
        now = (round(world.shares().get("v2", 0)), len(world.of("v2")))
        if now != seen[-1]:
            seen.append(now)
    return seen


# --- steps that advance by themselves -------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "scale", "expected"),
    [
        pytest.param(
            [weight(25), pause("5s"), weight(50), pause("5s"), weight(100)],
            "match_weight",
            [(0, 0), (0, 1), (25, 1), (25, 2), (50, 2), (50, 4), (100, 4)],
            id="match-weight: instances before weight",
        ),
        pytest.param(
            [weight(25), weight(50), weight(100)],
            1,
            [(0, 0), (0, 1), (50, 4), (100, 4)],
            id="canary_scale 1: steps whose instances are ready pass in one pass",
        ),
        pytest.param(
            [weight(10), pause("5s"), weight(100)],
            2,
            [(0, 0), (0, 2), (10, 2), (10, 4), (100, 4)],
            id="canary_scale 2",
        ),
        pytest.param(
            [weight(50)],
            "match_weight",
            [(0, 0), (0, 2), (50, 4), (100, 4)],
            id="last weight below 100: full size, then complete",
        ),
        pytest.param(
            [weight(5), weight(30), weight(60), weight(100)],
            "match_weight",
            [(0, 0), (0, 1), (5, 2), (30, 3), (60, 4), (100, 4)],
            id="ceil(instances * weight), the next step's instances launched at once",
        ),
    ],
)
def test_weight_and_instances_follow_the_steps(steps, scale, expected):
    world = started(spec(*steps, canary_scale=scale))
    assert trace(world) == expected
    assert world.phase is COMPLETED and world.status.stable == "v2"
    assert world.of("v1") == [] and world.serving("v2") == 4
    assert world.status.rollout.reason == f"all {len(steps)} steps passed"


def test_the_stable_release_keeps_full_size_until_the_canary_completes():
    world = started(spec(weight(50), pause("10s"), weight(100)))
    while world.status.rollout.active:
        assert len(world.of("v1")) == 4
        world.tick()
    assert world.phase is COMPLETED and world.of("v1") == []  # all leave in the completing pass


def test_sticky_users_are_kept_while_the_canary_runs_and_let_go_after():
    world = started(spec(weight(20), pause(), weight(100), sticky={"cookie": "zd_bucket"}))
    at_step(world, 1)
    assert world.applied.sticky == Sticky(cookie="zd_bucket")
    world.promote()
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.applied.sticky is None


# --- pauses ---------------------------------------------------------------------------------


def test_a_pause_without_duration_waits_for_a_person_then_goes_one_step():
    world = started(spec(weight(20), pause(), weight(50), pause(), weight(100)))
    at_step(world, 1)
    assert "paused until `zerodown promote`" in world.status.rollout.pause_reason
    world.run(3600, dt=60)  # an hour later: no progress deadline while a person decides
    assert (world.phase, world.shares()) == (PAUSED, {"v2": 20, "v1": 80})
    world.promote()
    at_step(world, 3)
    assert world.shares() == {"v2": 50, "v1": 50}


def test_a_pause_with_duration_ends_exactly_when_it_has_lasted():
    world = started(spec(weight(20), pause("30s"), weight(100)))
    at_step(world, 1, PROGRESSING)
    began = world.now
    world.run_until(lambda: world.status.rollout.step == 2)
    assert world.now - began == 30
    assert not any(r.kind == "pause" for r in world.records)


def test_a_pause_longer_than_the_progress_deadline_is_not_a_lack_of_progress():
    world = started(spec(weight(20), pause("15m"), weight(100)))
    world.run(1000, dt=5)
    assert world.phase is not FAILED_PHASE, world.status.rollout.reason
    world.run_until(lambda: world.phase is COMPLETED)


def test_pause_and_resume_hold_the_steps_where_they_are():
    world = started(spec(weight(20), pause("5s"), weight(60), weight(100)))
    at_step(world, 1, PROGRESSING)
    world.pause(who="ops")
    world.run(60)
    rollout = world.status.rollout
    assert (rollout.phase, rollout.step, rollout.pause_reason) == (PAUSED, 1, "paused by ops")
    assert world.shares() == {"v2": 20, "v1": 80}
    world.resume()
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.status.stable == "v2"


# --- analysis -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "phase", "share"),
    [(PASSED, PROGRESSING, 20), (FAILED, ABORTED, 0), (INCONCLUSIVE, PAUSED, 20)],
)
def test_an_analysis_step_outcome_acts_in_the_pass_that_sees_it(outcome, phase, share):
    world = started(spec(weight(20), ANALYSIS, weight(100)))
    at_step(world, 1, PROGRESSING)
    world.run(10)  # the analysis runs as long as it takes: no progress deadline meanwhile
    assert world.phase is PROGRESSING and world.shares()["v2"] == 20
    world.outcomes["analysis:step-2"] = (outcome, "errors: 0.01")
    world.tick()
    assert world.phase is phase
    assert world.shares().get("v2", 0) == share
    if outcome is FAILED:
        assert world.status.rollout.reason == "analysis:step-2: errors: 0.01"
        world.run(3)
        assert world.of("v2") == [] and world.serving("v1") == 4
    elif outcome is INCONCLUSIVE:
        assert "errors: 0.01" in world.status.rollout.pause_reason
    else:
        world.run_until(lambda: world.phase is COMPLETED)


@pytest.mark.parametrize("decision", ["promote", "abort"])
def test_a_person_decides_an_inconclusive_analysis(decision):
    world = started(
        spec(weight(20), ANALYSIS, weight(100)), **{"analysis:step-2": (INCONCLUSIVE, "")}
    )
    at_step(world, 1)
    getattr(world, decision)()
    world.run(10)
    if decision == "promote":
        assert world.phase is COMPLETED
        check = world.status.rollout.checks["analysis:step-2"]
        assert check.state is PASSED and check.reason.startswith("promoted by a person")
    else:
        assert world.phase is ABORTED and world.status.stable == "v1"
        assert world.of("v2") == []


def test_background_analysis_starts_at_its_starting_step():
    steps = (weight(20), pause(), weight(50), pause(), weight(100))
    world = started(spec(*steps, analysis={"templates": ["health"], "starting_step": 3}))
    at_step(world, 1)
    assert "analysis:background" not in world.status.rollout.checks
    world.promote()
    at_step(world, 3)
    assert world.status.rollout.checks["analysis:background"].state is CheckState.RUNNING
    world.outcomes["analysis:background"] = (FAILED, "p99 doubled")
    world.tick()
    assert world.phase is ABORTED and "p99 doubled" in world.status.rollout.reason


def test_a_failed_analysis_aborts_even_while_paused_by_a_person():
    world = started(spec(weight(20), ANALYSIS, weight(100)))
    at_step(world, 1, PROGRESSING)
    world.pause()
    world.tick()
    world.outcomes["analysis:step-2"] = (FAILED, "errors")
    world.tick()
    assert world.phase is ABORTED
    assert "v2" not in world.shares()


# --- header routes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "match"),
    [
        (HEADER, Match(release="v2", value="yes", header="X-Canary")),
        (COOKIE, Match(release="v2", value="1", cookie="beta")),
    ],
)
@pytest.mark.parametrize("end", ["promote", "abort"])
def test_a_header_route_holds_from_its_step_until_the_rollout_ends(route, match, end):
    world = started(spec(weight(20), route, pause(), weight(100)))
    at_step(world, 0, PROGRESSING)
    assert world.header_routes() == ()  # waiting for the weight step's instance
    at_step(world, 2)  # the route step passed in the same pass as the weight step
    assert world.header_routes() == (match,)
    assert world.shares() == {"v2": 20, "v1": 80}
    getattr(world, end)()
    world.run(10)
    assert world.header_routes() == ()
    assert world.status.stable == ("v2" if end == "promote" else "v1")


def test_a_header_route_at_weight_zero_has_a_canary_to_go_to():
    world = started(spec(HEADER, pause(), weight(100)))
    at_step(world, 1)
    assert world.header_routes() == (Match(release="v2", value="yes", header="X-Canary"),)
    assert world.shares() == {"v1": 100}
    assert world.serving("v2") >= 1


# --- the operator ---------------------------------------------------------------------------


def test_promote_passes_one_step_only():
    world = started(spec(weight(20), pause(), weight(50), pause(), weight(100)))
    at_step(world, 1)
    world.promote()
    at_step(world, 3)
    assert world.shares() == {"v2": 50, "v1": 50}


def test_full_promote_skips_the_pauses_without_outrunning_the_canary_capacity():
    world = started(spec(weight(20), pause(), weight(50), pause(), weight(100)))
    at_step(world, 1)
    world.promote(full=True)
    world.run_until(lambda: world.phase is COMPLETED)
    assert not any(r.kind == "pause" and "step 4/5" in r.message for r in world.records)


def test_full_promote_from_the_last_pause_completes():
    world = started(spec(weight(20), pause(), weight(100)))
    at_step(world, 1)
    world.promote()  # to the set_weight 100 step: it waits for 4 canary instances
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.status.stable == "v2" and world.serving("v2") == 4


@pytest.mark.parametrize("when", [0, 1])
def test_abort_sends_all_traffic_to_stable_in_the_next_pass(when):
    world = started(spec(weight(40), pause(), weight(100)))
    at_step(world, when, PROGRESSING if when == 0 else PAUSED)
    world.abort(who="ops")
    world.tick()
    assert world.phase is ABORTED and world.status.rollout.reason == "aborted by ops"
    assert world.shares() == {"v1": 100}
    assert world.of("v2") == []  # retired in the same pass, after the table without them
    with pytest.raises(StateError):
        world.abort()


def test_retry_runs_an_aborted_rollout_again_from_its_first_step():
    world = started(spec(weight(20), pause(), weight(100)))
    at_step(world, 1)
    world.abort()
    world.run(3)
    world.retry()
    assert world.status.rollout.step == 0
    at_step(world, 1)
    assert world.shares() == {"v2": 20, "v1": 80}
    world.promote()
    world.run_until(lambda: world.phase is COMPLETED)


def test_retry_after_a_failed_analysis_runs_the_analysis_again():
    world = started(spec(weight(20), ANALYSIS, weight(100)), **{"analysis:step-2": (FAILED, "bad")})
    world.run_until(lambda: world.phase is ABORTED)
    world.outcomes["analysis:step-2"] = (PASSED, "fine now")
    world.retry()
    world.run(20)
    assert world.phase is COMPLETED, world.status.rollout.reason


# --- failures -------------------------------------------------------------------------------


def test_a_failing_canary_instance_fails_the_rollout_with_weight_zero_at_once():
    world = started(spec(weight(50), pause(), weight(100)))
    at_step(world, 1)
    victim = world.of("v2")[0]
    world.fail_instance(victim, "exited with 137")
    world.tick()
    assert world.phase is FAILED_PHASE
    assert world.status.rollout.reason == f"instance {victim} of v2: exited with 137"
    assert world.shares() == {"v1": 100} and world.of("v2") == []


def test_a_canary_instance_that_stops_being_ready_leaves_the_table_in_the_same_pass():
    world = started(spec(weight(20), pause(), weight(100)))
    at_step(world, 1)
    world.unready(world.of("v2")[0])
    world.tick()
    assert world.shares() == {"v1": 100} and world.phase is PAUSED


def test_a_failing_stable_instance_is_replaced_while_the_canary_waits():
    world = started(spec(weight(20), pause(), weight(100)))
    at_step(world, 1)
    world.fail_instance(world.of("v1")[0])
    world.run(3)
    assert world.serving("v1") == 4
    assert world.phase is PAUSED and world.shares() == {"v2": 20, "v1": 80}


def test_abort_while_stable_is_short_of_an_instance_still_gives_the_canary_nothing():
    world = started(spec(weight(50), pause(), weight(100)))
    at_step(world, 1)
    world.fail_instance(world.of("v1")[0])
    world.abort()
    world.tick()  # the sim raises: rule 4, v2 still gets a share


def test_a_release_that_never_starts_fails_and_leaves_stable_alone():
    s = spec(weight(20), pause(), weight(100))
    world = World(spec=s)
    world.deploy("v1")
    world.run_until(lambda: world.status.stable == "v1")
    stable = world.of("v1")
    world.broken.add("v2")
    world.deploy("v2")
    world.run(5)
    assert world.phase is FAILED_PHASE and "startup probe failed" in world.status.rollout.reason
    assert world.of("v1") == stable and world.shares() == {"v1": 100}


def test_a_canary_that_never_gets_ready_fails_at_its_progress_deadline():
    world = started(spec(weight(20), pause(), weight(100), progress_deadline="30s"))
    world.ready_after = 10_000
    world.run(40)
    assert world.phase is FAILED_PHASE
    assert "no progress for 30s" in world.status.rollout.reason
    assert "1 instances of v2 not ready" in world.status.rollout.reason


def test_a_failed_flag_step_fails_the_rollout_before_any_traffic():
    flag = {"set_flag": {"key": "new-checkout", "rollout": "10%"}}
    world = started(spec(flag, weight(20), pause()), **{"flag:step-1": (FAILED, "no such flag")})
    world.run(3)
    assert world.phase is FAILED_PHASE
    assert world.status.rollout.reason == "set_flag new-checkout: no such flag"
    assert world.of("v2") == []


# --- supersede and rollback -----------------------------------------------------------------


def test_a_new_deploy_mid_canary_supersedes_it_and_starts_from_the_first_step():
    world = started(spec(weight(50), pause(), weight(100)))
    at_step(world, 1)
    first = world.status.rollout.revision
    world.deploy("v3")
    world.tick()
    assert world.superseded == [first]
    assert "v2" not in world.shares() and world.of("v2") == []
    assert world.status.rollout.version == "v3" and world.status.rollout.step == 0
    at_step(world, 1)
    assert world.shares() == {"v3": 50, "v1": 50}
    world.promote()
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.status.stable == "v3" and {i.release for i in world.instances.values()} == {"v3"}


def test_rollback_during_a_canary_aborts_it():
    world = started(spec(weight(20), pause(), weight(100)))
    at_step(world, 1)
    world.rollback()
    world.tick()
    assert world.phase is ABORTED and world.shares() == {"v1": 100}


def test_rollback_after_completion_rolls_back_without_steps_or_analysis():
    world = started(spec(weight(20), ANALYSIS, weight(100)), **{"analysis:step-2": (PASSED, "ok")})
    world.run_until(lambda: world.phase is COMPLETED)
    world.started_checks.clear()
    world.rollback()
    rollout = world.status.rollout
    assert (rollout.version, rollout.strategy, rollout.rollback) == ("v1", "rolling", True)
    world.run_until(lambda: world.phase is COMPLETED)
    assert world.status.stable == "v1" and world.of("v2") == []
    assert world.started_checks == []
