"""Measurement phases, metric and run outcomes: Argo Rollouts' rules, table-driven, no clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zerodown.core.analysis.assess import assess_metric, assess_run, next_due
from zerodown.core.analysis.evaluate import Observed, measurement, substituted
from zerodown.core.analysis.judge import judge
from zerodown.core.analysis.model import Measurement, Phase, RunState, Verdict
from zerodown.spec.analysis import MetricSpec

# successful, failed, unsure (inconclusive), error
S, F, U, E = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR


def metric(**fields: Any) -> MetricSpec:
    base: dict[str, Any] = {"name": "m", "query": "error_rate"}
    return MetricSpec.model_validate({**base, **fields})


def ms(*phases: Phase, insufficient: bool = False) -> list[Measurement]:
    return [
        Measurement(
            p, float(i), float(i) + 0.1, value=0.0, message=f"#{i}", insufficient=insufficient
        )
        for i, p in enumerate(phases)
    ]


# ------------------------------------------------------------------ measurement from a value


@pytest.mark.parametrize(
    ("fields", "observed", "phase", "message"),
    [
        ({"failure_condition": "result > 0.05"}, Observed(0.21, samples=100), F, "0.21 > 0.05"),
        (
            {"failure_condition": "result > 0.05"},
            Observed(0.01, samples=100),
            S,
            "not (0.01 > 0.05)",
        ),
        ({"success_condition": "result < 0.5"}, Observed(0.7), F, "not (0.7 < 0.5)"),
        ({"success_condition": "result < 0.5"}, Observed(0.2), S, "0.2 < 0.5"),
        (
            {"success_condition": "result < 0.1", "failure_condition": "result > 0.5"},
            Observed(0.3),
            U,
            "neither 0.3 > 0.5 nor 0.3 < 0.1",
        ),
        ({}, Observed(0.3), S, "0.3"),
        # too little traffic: never a pass ...
        ({"failure_condition": "result > 0.05"}, Observed(0.0, samples=12), U, "12 requests"),
        # ... but a failure on little traffic is still a failure
        ({"failure_condition": "result > 0.05"}, Observed(0.25, samples=12), F, "0.25 > 0.05"),
        (
            {"min_samples": 10, "failure_condition": "result > 0.05"},
            Observed(0.0, samples=12),
            S,
            "not (0 > 0.05)",
        ),
        ({}, Observed(None, samples=0, note="no requests in the window"), U, "no requests"),
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "20%"},
            Observed(0.3, baseline=0.1, samples=100, baseline_samples=1000),
            F,
            "0.3 vs baseline 0.1 (+20% allowed: 0.12)",
        ),
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "20%"},
            Observed(0.11, baseline=0.1, samples=100, baseline_samples=1000),
            S,
            "0.11 vs baseline 0.1",
        ),
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "50ms"},
            Observed(0.16, baseline=0.1, samples=100, baseline_samples=1000),
            F,
            "+0.05 allowed: 0.15",
        ),
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "20%"},
            Observed(0.11, baseline=0.1, samples=100, baseline_samples=3),
            U,
            "3 requests to the baseline",
        ),
        # a comparison on too few samples is noise: neither a pass nor a failure
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "20%"},
            Observed(0.9, baseline=0.1, samples=5, baseline_samples=1000),
            U,
            "5 requests to the canary",
        ),
        (
            {"query": "latency_p99", "compare": "baseline", "max_increase": "20%"},
            Observed(0.11, baseline=None, samples=100),
            U,
            "no baseline",
        ),
        (
            {
                "query": "error_rate",
                "compare": "baseline",
                "failure_condition": "result > baseline + 0.01",
            },
            Observed(0.05, baseline=0.0, samples=100, baseline_samples=100),
            F,
            "0.05 > 0 + 0.01",
        ),
        (
            {"failure_condition": "result / samples > 1"},
            Observed(1.0, samples=0, note=""),
            E,
            "division",
        ),
    ],
)
def test_measurement_phase(
    fields: dict[str, Any], observed: Observed, phase: Phase, message: str
) -> None:
    m = measurement(metric(**fields), observed, started_at=1.0, finished_at=2.0)
    assert m.phase is phase, m.message
    assert message in m.message
    assert (m.started_at, m.finished_at, m.value) == (1.0, 2.0, observed.value)


def test_judge_verdicts_become_phases() -> None:
    spec = metric(query="latency_p99", compare="baseline", judge={}, min_samples=5)
    slow = judge(
        [3.0, 3.1, 3.2, 3.3] * 10, [1.0, 1.1, 1.2] * 10, confidence=0.95, allowed_effect=0.6
    )
    same = judge([1.0, 1.1, 1.2] * 10, [1.0, 1.1, 1.2] * 10, confidence=0.95, allowed_effect=0.6)
    unsure = judge([2.0, 1.0, 3.0], [1.5, 0.5, 1.0], confidence=0.95, allowed_effect=0.6)
    phases = [
        measurement(spec, Observed(1.0, 1.0, 40, 40, judged=j), started_at=0, finished_at=1)
        for j in (slow, same, unsure)
    ]
    assert [p.phase for p in phases] == [F, S, U]
    assert [p.verdict for p in phases] == [Verdict.FAIL, Verdict.PASS, Verdict.MARGINAL]


def test_substituted_keeps_the_text() -> None:
    assert substituted("result>0.05 and samples >= 50", {"result": 0.2, "samples": 12}) == (
        "0.2>0.05 and 12 >= 50"
    )


# ------------------------------------------------------------------ one metric


@pytest.mark.parametrize(
    ("fields", "phases", "terminating", "expected"),
    [
        ({"interval": 1, "count": 3}, [], False, Phase.PENDING),
        ({"interval": 1, "count": 3}, [], True, S),  # Argo: terminated before measuring
        ({"interval": 1, "count": 3}, [S], False, Phase.RUNNING),
        ({"interval": 1, "count": 3}, [S, S, S], False, S),
        ({"interval": 1, "count": 3}, [S, F], False, F),  # failure_limit 0: first failure
        ({"interval": 1, "count": 3, "failure_limit": 1}, [S, F], False, Phase.RUNNING),
        ({"interval": 1, "count": 3, "failure_limit": 1}, [F, S, S], False, S),
        ({"interval": 1, "count": 3, "failure_limit": 1}, [F, F], False, F),
        ({"interval": 1, "count": 3}, [U], False, U),
        ({"interval": 1, "count": 3, "inconclusive_limit": 1}, [U, S], False, Phase.RUNNING),
        ({"interval": 1, "count": 3}, [E, E, E, E], False, Phase.RUNNING),  # limit 4: 4 is fine
        ({"interval": 1, "count": 3}, [E, E, E, E, E], False, E),
        ({"interval": 1, "count": 3}, [E, E, S, E, E, E, E], False, Phase.RUNNING),  # reset
        ({"interval": 1, "count": 3, "consecutive_error_limit": 0}, [E], False, E),
        ({"interval": 1, "count": 2}, [S, E, S], False, S),  # errors do not count
        ({"interval": 1}, [S, S, S, S], False, Phase.RUNNING),  # no count: until terminated
        ({"interval": 1}, [S, S, S, S], True, S),
        ({}, [S], False, S),  # neither count nor interval: one measurement
        ({}, [E], False, Phase.RUNNING),
    ],
)
def test_metric_outcome(
    fields: dict[str, Any], phases: list[Phase], terminating: bool, expected: Phase
) -> None:
    result = assess_metric(metric(**fields), ms(*phases), terminating=terminating)
    assert result.phase is expected, result.message


def test_failed_metric_says_why() -> None:
    spec = metric(interval=1, count=5, failure_limit=2, failure_condition="result > 0.05")
    seen = [
        measurement(spec, Observed(v, samples=100), started_at=i, finished_at=i + 0.1)
        for i, v in enumerate([0.01, 0.21, 0.3, 0.01, 0.21])
    ]
    result = assess_metric(spec, seen)
    assert result.phase is F
    assert result.message == "0.21 > 0.05 (3 of 5 failed)"


def test_too_little_traffic_ends_inconclusive_not_successful() -> None:
    spec = metric(interval=1, count=3, failure_condition="result > 0.05")
    few = [
        measurement(spec, Observed(0.0, samples=n), started_at=i, finished_at=i + 0.1)
        for i, n in enumerate([5, 10, 15])
    ]
    # the window is still filling: the early insufficient measurements do not pause at once
    assert assess_metric(spec, few[:2]).phase is Phase.RUNNING
    final = assess_metric(spec, few)
    assert final.phase is U
    assert "too little traffic: 15 requests" in final.message
    # the last (cumulative) window filled up: that is a pass
    enough = [*few[:2], measurement(spec, Observed(0.0, samples=60), started_at=3, finished_at=4)]
    assert assess_metric(spec, enough).phase is S


# ------------------------------------------------------------------ timing


def test_next_due() -> None:
    spec = metric(interval=2, count=2)
    assert next_due(spec, [], 100.0) == 102.0  # first after one interval
    assert next_due(spec, [Measurement(S, 102, 102.5)], 100.0) == 104.5
    assert next_due(spec, [Measurement(S, 102, 102.5), Measurement(S, 104.5, 105)], 100.0) is None
    once = metric()
    assert next_due(once, [], 100.0) == 110.0  # router: let the window fill
    assert next_due(once, [Measurement(E, 110, 111)], 100.0) == 121.0  # error retry
    assert next_due(metric(initial_delay=0), [], 100.0) == 100.0
    prom = MetricSpec.model_validate(
        {"name": "p", "provider": {"prometheus": {"address": "http://x"}}, "query": "up"}
    )
    assert next_due(prom, [], 100.0) == 100.0


# ------------------------------------------------------------------ the run


def run_of(**by_metric: list[Phase]) -> RunState:
    return RunState(started_at=0.0, measurements={k: tuple(ms(*v)) for k, v in by_metric.items()})


def test_run_waits_for_every_metric_then_succeeds() -> None:
    a = metric(name="a", interval=1, count=2)
    b = metric(name="b", interval=1, count=1)
    result = assess_run([a, b], run_of(a=[S], b=[S]), now=5.0)
    assert result.phase is Phase.RUNNING
    assert result.due == ("a",)
    result = assess_run([a, b], run_of(a=[S, S], b=[S]), now=5.0)
    assert result.phase is S and result.completed


def test_one_failure_ends_the_run_at_once_with_its_reason() -> None:
    a = metric(name="error-rate", interval=1, count=10, failure_condition="result > 0.05")
    b = metric(name="b", interval=1, count=10)
    bad = measurement(a, Observed(0.21, samples=100), started_at=1, finished_at=1.1)
    state = RunState(started_at=0.0, measurements={"error-rate": (bad,), "b": tuple(ms(S))})
    result = assess_run([a, b], state, now=1.2)
    assert result.phase is F
    assert result.reason == "error-rate: 0.21 > 0.05 (1 of 1 failed)"
    assert result.due == ()
    assert {r.name: r.phase for r in result.metrics} == {"error-rate": F, "b": S}


def test_worst_phase_wins() -> None:
    a, b = metric(name="a", interval=1, count=3), metric(name="b", interval=1, count=3)
    assert assess_run([a, b], run_of(a=[U], b=[F]), now=9).phase is F
    assert assess_run([a, b], run_of(a=[U], b=[E] * 5), now=9).phase is E
    assert assess_run([a, b], run_of(a=[U], b=[S]), now=9).phase is U


def test_dry_run_metrics_never_decide() -> None:
    a, b = metric(name="a", interval=1, count=1), metric(name="b", interval=1, count=1)
    result = assess_run([a, b], run_of(a=[F], b=[S]), now=9, dry_run=["a"])
    assert result.phase is S
    assert next(r for r in result.metrics if r.name == "a").phase is F
    only_dry = assess_run([a], run_of(a=[F]), now=9, dry_run=["a"])
    assert only_dry.phase is S and only_dry.reason == "dry run only"


def test_termination_ends_open_ended_metrics() -> None:
    bg = metric(name="bg", interval=1)
    running = assess_run([bg], run_of(bg=[S, S]), now=9)
    assert running.phase is Phase.RUNNING and running.due == ("bg",)
    ended = assess_run([bg], run_of(bg=[S, S]).terminating(), now=9)
    assert ended.phase is S


def test_next_at_is_the_earliest_due_time() -> None:
    a, b = metric(name="a", interval=3, count=5), metric(name="b", interval=1, count=5)
    result = assess_run([a, b], RunState(started_at=100.0), now=100.5)
    assert result.due == () and result.next_at == 101.0
    result = assess_run([a, b], RunState(started_at=100.0), now=103.0)
    assert result.due == ("a", "b")


def test_state_round_trips_through_json() -> None:
    spec = metric(query="latency_p99", compare="baseline", judge={}, min_samples=5)
    verdict = judge([3.0] * 5, [1.0] * 5, confidence=0.9, allowed_effect=0.6)
    m = measurement(spec, Observed(3.0, 1.0, 5, 5, judged=verdict), started_at=1, finished_at=2)
    state = RunState(started_at=0.5).adding("m", m).adding("m", ms(E)[0]).terminating()
    assert RunState.from_json(state.to_json()) == state


def test_run_score_summarises_judged_metrics() -> None:
    a = metric(name="a", query="latency_p99", compare="baseline", judge={}, min_samples=5)
    slow = judge([3.0, 3.1, 3.2] * 10, [1.0, 1.1] * 10, confidence=0.95, allowed_effect=0.6)
    m = measurement(a, Observed(3.0, 1.0, 30, 20, judged=slow), started_at=1, finished_at=2)
    result = assess_run([a], RunState(0.0, {"a": (m,)}), now=3)
    assert result.phase is F
    assert result.score is not None and result.score.verdict is Verdict.FAIL


def test_results_serialise_for_status() -> None:
    a = metric(name="a", query="latency_p99", compare="baseline", judge={}, min_samples=5)
    slow = judge([3.0, 3.1, 3.2] * 10, [1.0, 1.1] * 10, confidence=0.95, allowed_effect=0.6)
    m = measurement(a, Observed(3.0, 1.0, 30, 20, judged=slow), started_at=1, finished_at=2)
    data = assess_run([a], RunState(0.0, {"a": (m,)}), now=3).to_json()
    assert data["phase"] == "failed"
    assert data["metrics"][0]["last"]["verdict"] == "fail"
    assert data["score"] == {
        "verdict": "fail",
        "score": 0.0,
        "counts": {"pass": 0, "marginal": 0, "fail": 1},
    }
    json.dumps(data)
    assert assess_run([], RunState(0.0), now=1).reason == "no metrics"
