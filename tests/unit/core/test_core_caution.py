"""Caution that follows risk, in the simulated world: a rollout whose migration cannot be undone
once contracted pauses longer, runs its background analysis again after every weight, and never
contracts by itself; the same rollout without that risk does none of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sim import FAILED, HEALTH_TEMPLATE, PASSED, World

from zerodown.core import caution, checks
from zerodown.core.model import Check, CheckState, Rollout, RolloutPhase, ServiceStatus
from zerodown.core.plan import Plan
from zerodown.spec.model import Spec

DROP = "drop_column users.email drops its data at complete"


class RiskyWorld(World):
    """The engine's migration check reports an irreversible contract, as check_tasks does."""

    reasons: tuple[str, ...] = (DROP,)

    def run_checks(self) -> None:
        super().run_checks()
        rollout = self.status.rollout
        migrate = rollout.checks.get("migrate") if rollout else None
        if rollout and migrate and migrate.done and caution.DETAIL_KEY not in migrate.detail:
            detail = {**migrate.detail, caution.DETAIL_KEY: list(self.reasons)}
            rollout = rollout.with_check("migrate", replace(migrate, detail=detail))
            self.status = replace(self.status, rollout=rollout)


def spec(*, background: bool = True, **care: Any) -> Spec:
    canary: dict[str, Any] = {
        "steps": [{"set_weight": 25}, {"pause": {"duration": "10s"}}, {"set_weight": 100}]
    }
    if background:
        canary["analysis"] = {"templates": ["health"]}
    return Spec.model_validate(
        {
            "service": "shop",
            "instances": 4,
            "run": {"command": ["app"]},
            "migrations": {"database": "postgresql://db/shop", "quiet_period": "1s"},
            "analysis": {"templates": HEALTH_TEMPLATE},
            "strategy": {"canary": canary},
            "caution": {"irreversible": care},
        }
    )


def deployed(s: Spec, *, risky: bool, **outcomes: tuple[CheckState, str]) -> World:
    world = (RiskyWorld if risky else World)(
        spec=s, outcomes={"migrate": (PASSED, "ok"), **outcomes}
    )
    world.deploy("v1")
    world.run_until(lambda: world.status.stable == "v1")
    world.deploy("v2")
    return world


def pause_length(world: World) -> float:
    """Simulated seconds the canary spent in its pause step (index 1)."""
    world.run_until(lambda: world.status.rollout.step == 1, seconds=120)
    began = world.now
    world.run_until(lambda: world.status.rollout.step >= 2, seconds=120)
    return world.now - began


@pytest.mark.parametrize(
    ("risky", "care", "expected"),
    [
        (False, {}, 10.0),  # no risk: the spec's 10s
        (True, {}, 20.0),  # default pause_factor 2
        (True, {"pause_factor": 3}, 30.0),
        (True, {"pause_factor": 1}, 10.0),
    ],
)
def test_timed_pauses_follow_risk(risky: bool, care: dict[str, Any], expected: float) -> None:
    world = deployed(
        spec(analysis_every_step=False, **care),
        risky=risky,
        **{"analysis:background": (PASSED, "")},
    )
    assert pause_length(world) == pytest.approx(expected, abs=0.6)
    if risky and expected > 10:
        assert any("x" in r.message and "caution" in r.message for r in world.records)


@pytest.mark.parametrize(
    ("risky", "outcome", "phase", "started"),
    [
        (True, PASSED, RolloutPhase.COMPLETED, ["analysis:caution-1", "analysis:caution-3"]),
        (True, FAILED, RolloutPhase.ABORTED, ["analysis:caution-1"]),
        (False, PASSED, RolloutPhase.COMPLETED, []),
    ],
)
def test_background_analysis_runs_again_after_every_weight(
    risky: bool, outcome: CheckState, phase: RolloutPhase, started: list[str]
) -> None:
    outcomes = {"analysis:caution-1": (outcome, "x"), "analysis:caution-3": (PASSED, "ok")}
    world = deployed(spec(), risky=risky, **outcomes)
    world.run_until(lambda: not world.status.rollout.active, seconds=200)
    assert world.status.rollout.phase is phase
    assert [k for k in world.started_checks if k.startswith("analysis:caution")] == started


def test_no_extra_analysis_without_a_background_one() -> None:
    world = deployed(spec(background=False), risky=True)
    world.run_until(lambda: not world.status.rollout.active, seconds=200)
    assert world.status.rollout.phase is RolloutPhase.COMPLETED
    assert not [k for k in world.started_checks if k.startswith("analysis:caution")]


def completed(reasons: list[str]) -> ServiceStatus:
    migrate = Check(
        kind="migrate",
        state=CheckState.PASSED,
        detail={"started": True, caution.DETAIL_KEY: reasons},
    )
    rollout = Rollout(
        revision=2,
        version="v2",
        strategy="canary",
        started_at=0.0,
        previous="v1",
        phase=RolloutPhase.COMPLETED,
        checks={"migrate": migrate},
    )
    return ServiceStatus(service="shop", stable="v2", rollout=rollout)


@pytest.mark.parametrize(
    ("reasons", "manual", "contracts"),
    [([], True, True), ([DROP], True, False), ([DROP], False, True)],
)
def test_quiet_period_contract_waits_for_a_person(
    reasons: list[str], manual: bool, contracts: bool
) -> None:
    plan = Plan(status=completed(reasons), instances=[], now=10.0)
    checks.contract_when_quiet(plan, spec(manual_contract=manual))
    assert ("migrate:contract" in plan.status.rollout.checks) is contracts


def test_summary_names_the_reason_and_what_changes() -> None:
    status = completed([DROP])
    line = caution.summary(spec(), status.rollout, strategy="canary")
    assert line == (
        f"caution raised ({DROP}): the contract waits for `zerodown migrate complete`; "
        "timed pauses 2 times as long; the background analysis must pass after every weight"
    )
    assert caution.summary(spec(), completed([]).rollout, strategy="canary") == ""
