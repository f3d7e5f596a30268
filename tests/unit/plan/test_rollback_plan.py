"""The rollback plan computed from a spec: worst-case times by the documented formula, who can
roll back, how, and what blocks it. Table-driven; pure."""

from __future__ import annotations

from typing import Any

import pytest

from zerodown.core.rollback_plan import (
    RECONCILE_PASS,
    ROUTE_APPLY,
    MigrationOutlook,
    compute,
    metric_detect,
)
from zerodown.spec.analysis import MetricSpec
from zerodown.spec.model import Spec

BACK = RECONCILE_PASS + ROUTE_APPLY
ERRORS = {
    "name": "errors",
    "query": "error_rate",
    "interval": "1s",
    "failure_condition": "result > 0.05",
}


def make(strategy: dict[str, Any], *metrics: dict[str, Any], **extra: Any) -> Spec:
    doc: dict[str, Any] = {
        "service": "shop",
        "instances": 4,
        "run": {"command": ["app"]},
        "strategy": strategy,
        **extra,
    }
    if metrics:
        doc["analysis"] = {"templates": {"health": {"metrics": list(metrics)}}}
    return Spec.model_validate(doc)


CANARY = {
    "canary": {
        "steps": [{"set_weight": 5}, {"set_weight": 100}],
        "analysis": {"templates": ["health"]},
    }
}
BLUE_GREEN = {"blue_green": {"post_promotion_analysis": {"templates": ["health"]}}}


@pytest.mark.parametrize(
    ("metric", "seconds"),
    [
        (ERRORS, 1.0),  # max(first 1s, interval 1s)
        ({**ERRORS, "failure_limit": 2, "interval": "2s"}, 6.0),  # 2 + 2 x 2
        ({**ERRORS, "initial_delay": "5s"}, 5.0),  # there from the start: the first measurement
        ({**ERRORS, "initial_delay": "200ms"}, 1.0),  # otherwise one interval
        ({k: v for k, v in ERRORS.items() if k != "interval"}, 10.0),  # router default first wait
        (
            {
                "name": "p",
                "provider": {"prometheus": {"address": "http://127.0.0.1:9090"}},
                "query": "up",
                "interval": "10s",
                "timeout": "5s",
                "failure_condition": "result < 1",
            },
            15.0,  # 10s interval + 5s query timeout
        ),
    ],
)
def test_metric_detection_follows_the_formula(metric: dict[str, Any], seconds: float) -> None:
    assert metric_detect(MetricSpec.model_validate(metric))[0] == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("spec", "worst", "relaunch", "how"),
    [
        (make(CANARY, ERRORS), 1.0 + BACK, 0, "route change only: canary weight 0"),
        (make(CANARY, {**ERRORS, "failure_limit": 1}), 2.0 + BACK, 0, "route change only"),
        (make(BLUE_GREEN, ERRORS), 1.0 + BACK, 0, "warm for 30s"),
        (make({"rolling": {"max_surge": 2}}), None, 4, "4 instances of v1 to launch, 2 at a time"),
        # two metrics: the one that reacts first decides
        (make(CANARY, {**ERRORS, "interval": "3s"}, {**ERRORS, "name": "e2"}), 1.0 + BACK, 0, ""),
    ],
)
def test_worst_case_who_and_how(spec: Spec, worst: float | None, relaunch: int, how: str) -> None:
    plan = compute(spec, version="v2", stable="v1")
    assert plan.worst_case == (None if worst is None else pytest.approx(worst))
    assert plan.relaunch == relaunch
    assert how in plan.how
    assert plan.who[0].startswith("anyone holding the admin token")
    if worst is None:
        assert "no analysis watches this rollout" in plan.notes[0]
    else:
        assert plan.who[-1] == "the controller by itself, on: analysis, progress-deadline"


def test_a_dry_run_metric_is_listed_but_never_decides() -> None:
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"]},
            "analysis": {"templates": {"health": {"metrics": [ERRORS], "dry_run": ["errors"]}}},
            "strategy": CANARY,
        }
    )
    plan = compute(spec, stable="v1")
    (trigger,) = [t for t in plan.triggers if t.kind == "analysis"]
    assert trigger.detect is None and trigger.effect.startswith("none: dry run")
    assert plan.worst_case is None


def test_every_trigger_kind_is_listed() -> None:
    spec = make(
        CANARY,
        ERRORS,
        smoke={"checks": [{"name": "home", "request": "GET /"}]},
        probes={"liveness": {"http": "/livez"}, "readiness": {"http": "/ready", "period": "2s"}},
        flag_guards=[{"flag": "new-checkout", "analysis": {"templates": ["health"]}}],
    )
    kinds = [t.kind for t in compute(spec, stable="v1").triggers]
    assert kinds == [
        "analysis",
        "probe",
        "probe",
        "progress-deadline",
        "smoke",
        "smoke",
        "flag-guard",
    ]


@pytest.mark.parametrize(
    ("outlook", "blocker", "caution"),
    [
        (MigrationOutlook(), None, None),
        (
            MigrationOutlook(to_start="0002_drop_email", start_reasons=("drops users.email",)),
            "no rollback to the release before this one is possible",
            "raised by 0002_drop_email (drops users.email): the contract waits for",
        ),
        (
            MigrationOutlook(to_contract="0001_add", to_start="0002_more", older_schemas=(1, 2)),
            "rolling back to revision(s) 1, 2 crosses a completed contract",
            None,
        ),
        (
            MigrationOutlook(to_contract="0001_drop", contract_reasons=("drops t",)),
            None,
            "this deploy stops before contracting it",
        ),
    ],
)
def test_migrations_block_and_raise_caution(
    outlook: MigrationOutlook, blocker: str | None, caution: str | None
) -> None:
    spec = make(CANARY, ERRORS, migrations={"database": "postgresql://db/x"})
    plan = compute(spec, stable="v1", migrations=outlook)
    assert any(blocker in b for b in plan.blockers) if blocker else not plan.blockers
    assert any(caution in c for c in plan.caution) if caution else not plan.caution
    if outlook.start_reasons:
        assert plan.steps[:2] == [
            "migrate: start 0002_drop_email (expand)",
            "weight 5%, then the background analysis once more (caution)",
        ]
        assert any(t.name == "analysis:caution-N" for t in plan.triggers)


def test_first_release_and_unknown_stable() -> None:
    spec = make(CANARY, ERRORS)
    assert compute(spec, first=True).how.startswith("nothing to go back to")
    unknown = compute(spec)
    assert "the stable release stays at full size" in unknown.how
    assert any("no state store to read" in n for n in unknown.notes)
