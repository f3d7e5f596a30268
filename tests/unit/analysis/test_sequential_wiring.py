"""judge.sequential in the spec, a look over new requests only, and how looks add up to a metric."""

from __future__ import annotations

import pytest

from zerodown.core.analysis.assess import assess_metric, next_due
from zerodown.core.analysis.model import Measurement, Phase, RunState
from zerodown.core.analysis.sequential_look import look, measurement_of
from zerodown.core.errors import SpecError
from zerodown.spec.analysis import AnalysisSpec, MetricSpec
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

ISSUE_EXAMPLE = """\
service: shop
run: {command: [app]}
analysis:
  templates:
    health:
      metrics:
        - name: errors
          provider: router
          judge: {sequential: {metric: error_rate, max_increase: 1%, false_abort: 1%}}
        - name: latency
          provider: router
          judge: {sequential: {metric: latency, stochastic_order: canary_slower, false_abort: 1%}}
"""


def test_the_issue_example_loads() -> None:
    spec = parse_model(ISSUE_EXAMPLE, Spec, file="zerodown.yaml")
    errors, latency = spec.analysis.templates["health"].metrics
    assert errors.sequential is not None and latency.sequential is not None
    assert (errors.sequential.false_abort, errors.sequential.max_increase) == (0.01, 0.01)
    assert latency.sequential.stochastic_order == "canary_slower"
    assert (errors.interval, errors.compare, errors.count) == (1.0, "baseline", None)
    # survives the JSON round trip the CLI makes to the controller
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec


def test_a_latency_judges_tolerance_and_warmup_load_and_default() -> None:
    text = ISSUE_EXAMPLE.replace(
        "stochastic_order: canary_slower, false_abort: 1%}",
        "stochastic_order: canary_slower, false_abort: 1%, max_increase: 20%, "
        "ignore_below: 5ms, warmup: 300}",
    )
    latency = parse_model(text, Spec, file="zerodown.yaml").analysis.templates["health"]
    judge = latency.metrics[1].sequential
    assert judge is not None
    assert (judge.max_increase, judge.ignore_below, judge.warmup) == (0.2, 0.005, 300)
    default = parse_model(ISSUE_EXAMPLE, Spec, file="zerodown.yaml").analysis
    judge = default.templates["health"].metrics[1].sequential
    assert judge is not None
    assert (judge.max_increase, judge.ignore_below, judge.warmup) == (None, None, None)


METRIC_LINE = 8  # the line of the first metric in ISSUE_EXAMPLE ("- name: errors")

LATENCY = "metric: latency, stochastic_order: canary_slower, false_abort: 1%"

REFUSED = [
    ("metric: latency, false_abort: 1%", "needs stochastic_order: canary_slower"),
    ("metric: error_rate, false_abort: 1%, stochastic_order: canary_slower", "latency only"),
    ("metric: error_rate, false_abort: 0", "above 0 and at most 50%"),
    ("metric: error_rate, false_abort: 150%", "above 0 and at most 50%"),
    ("metric: error_rate, false_abort: often", "not a probability"),
    ("metric: error_rate, false_abort: 1%, max_increase: lots", "not a share"),
    ("metric: errors, false_abort: 1%", "error_rate"),
    ("metric: error_rate", "false_abort"),
    ("metric: error_rate, false_abort: 1%, confidence: 0.9", "confidence"),
    ("metric: error_rate, false_abort: 1%, warmup: 50", "warmup applies to metric: latency only"),
    (
        "metric: error_rate, false_abort: 1%, ignore_below: 2ms, warmup: 5",
        "ignore_below and warmup apply to metric: latency only",
    ),
    (LATENCY + ", max_increase: -10%", "not a share from 0 to 100%"),
    (LATENCY + ", max_increase: 300%", "not a share from 0 to 100%"),
    (LATENCY + ", ignore_below: soon", "soon"),
    (LATENCY + ", ignore_below: -1ms", "is not a duration"),
    (LATENCY + ", ignore_below: -0.001", "cannot be negative"),
    (LATENCY + ", ignore_below: 2m", "ignore_below is at most 60s"),
    (LATENCY + ", warmup: -1", "greater than or equal to 0"),
    (LATENCY + ", warmup: lots", "warmup"),
]


@pytest.mark.parametrize(("judge", "says"), REFUSED)
def test_a_bad_sequential_judge_is_refused_with_its_line(judge: str, says: str) -> None:
    text = ISSUE_EXAMPLE.replace(
        "{metric: error_rate, max_increase: 1%, false_abort: 1%}", "{" + judge + "}"
    )
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    message = str(caught.value)
    assert f"zerodown.yaml:{METRIC_LINE + 1}" in message or f"zerodown.yaml:{METRIC_LINE}" in (
        message
    ), message
    assert says in message, message


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"query": "error_rate"}, "takes no query"),
        ({"window": "30s"}, "takes no window"),
        ({"failure_condition": "result > 1"}, "takes no failure_condition"),
        ({"provider": {"prometheus": {"address": "http://x"}}}, "provider router"),
        (
            {
                "judge": {
                    "sequential": {"metric": "error_rate", "false_abort": 0.01},
                    "mann_whitney": {},
                }
            },
            "one judge",
        ),
    ],
)
def test_a_sequential_metric_takes_nothing_that_contradicts_it(
    extra: dict[str, object], says: str
) -> None:
    fields: dict[str, object] = {
        "name": "m",
        "judge": {"sequential": {"metric": "error_rate", "false_abort": 0.01}},
        **extra,
    }
    with pytest.raises(ValueError, match=says):
        MetricSpec.model_validate(fields)


def test_an_empty_judge_is_still_mann_whitney() -> None:
    metric = MetricSpec.model_validate(
        {"name": "m", "query": "latency_p99", "compare": "baseline", "judge": {}}
    )
    assert metric.judge is not None and metric.judge.mann_whitney is not None
    assert metric.sequential is None


def sequential_metric(**judge: object) -> MetricSpec:
    spec = AnalysisSpec.model_validate(
        {
            "templates": {
                "t": {
                    "metrics": [
                        {
                            "name": "errors",
                            "judge": {
                                "sequential": {
                                    "metric": "error_rate",
                                    "false_abort": "1%",
                                    **judge,
                                }
                            },
                        }
                    ]
                }
            }
        }
    )
    return spec.templates["t"].metrics[0]


def test_a_look_reads_only_requests_after_its_cursors() -> None:
    metric = sequential_metric(max_increase="5%")
    assert metric.sequential is not None
    baseline = [(100.0 + i / 100, 0.01, 200) for i in range(1000)]
    canary = [(100.0 + i / 10, 0.01, 200 if i % 3 else 503) for i in range(100)]
    outcome, state = look(metric.sequential, None, canary[:10], baseline[:500], start=99.0)
    assert outcome.decision.value == "running"
    assert (outcome.canary_requests, outcome.baseline_requests) == (10, 500)
    assert state["canary_since"] == canary[9][0]
    # the next look gets overlapping samples (the router answers "since"): no double counting
    outcome, state = look(metric.sequential, state, canary[:40], baseline, start=99.0)
    assert outcome.baseline_requests == 1000
    assert outcome.decision.value == "fail"  # a third of the canary's requests failed
    assert outcome.canary_requests <= 40
    failed = measurement_of(outcome, state, started_at=1.0, finished_at=2.0)
    assert failed.phase is Phase.FAILED and "error rate above baseline + 5%" in failed.message
    assert Measurement.from_json(failed.to_json()) == failed


def running(at: float, state: dict[str, object] | None = None) -> Measurement:
    return Measurement(
        Phase.INCONCLUSIVE, at, at, value=1.0, insufficient=True, message="watching", state=state
    )


def test_looks_while_running_never_pass_and_only_the_last_keeps_its_state() -> None:
    metric = sequential_metric()
    run = RunState(started_at=0.0)
    for at in (1.0, 2.0, 3.0):
        run = run.adding("errors", running(at, {"n": at}))
    looks = run.of("errors")
    assert [m.state for m in looks] == [None, None, {"n": 3.0}]
    assert assess_metric(metric, looks).phase is Phase.RUNNING
    assert next_due(metric, looks, 0.0) == 4.0
    # still running when the analysis ends: too little evidence is never a pass
    assert assess_metric(metric, looks, terminating=True).phase is Phase.INCONCLUSIVE


def test_a_pass_ends_the_metric_and_a_fail_fails_it() -> None:
    metric = sequential_metric(max_increase="1%")
    passed = Measurement(Phase.SUCCESSFUL, 2.0, 2.0, message="sequential: within")
    looks = (running(1.0), passed)
    assert assess_metric(metric, looks).phase is Phase.SUCCESSFUL
    assert next_due(metric, looks, 0.0) is None
    failed = Measurement(Phase.FAILED, 2.0, 2.0, message="sequential: above")
    result = assess_metric(metric, (running(1.0), failed))
    assert result.phase is Phase.FAILED and "sequential: above" in result.message
