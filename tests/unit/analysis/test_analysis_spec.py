"""The analysis, gate, smoke and notify parts of the spec: what they accept and how they refuse."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from zerodown.spec.analysis import (
    AnalysisRef,
    AnalysisSpec,
    MetricSpec,
    first_wait,
    is_bounded,
    resolve,
)
from zerodown.spec.gates import GateSpec, SmokeSpec
from zerodown.spec.notify import NotifySpec

ISSUE_EXAMPLE = """
templates:
  health:
    metrics:
      - name: error-rate
        provider: router
        query: error_rate
        interval: 1s
        count: 10
        failure_condition: "result > 0.05"
        failure_limit: 0
      - name: latency-vs-baseline
        provider: router
        query: latency_p99
        compare: baseline
        max_increase: 20%
      - name: p99-from-prometheus
        provider: {prometheus: {address: "http://127.0.0.1:9090"}}
        query: 'histogram_quantile(0.99, sum(rate(x_bucket{release="{canary}"}[1m])) by (le))'
        success_condition: "result < 0.5"
"""


def test_the_issue_example_loads() -> None:
    spec = AnalysisSpec.model_validate(yaml.safe_load(ISSUE_EXAMPLE))
    error_rate, latency, prom = spec.templates["health"].metrics
    assert (error_rate.interval, error_rate.count, error_rate.consecutive_error_limit) == (
        1.0,
        10,
        4,
    )
    assert error_rate.min_samples == 50
    assert latency.max_increase is not None and latency.max_increase.relative == pytest.approx(0.2)
    assert latency.max_increase.limit(0.1) == pytest.approx(0.12)
    assert prom.provider_kind == "prometheus"
    assert [first_wait(m) for m in (error_rate, latency, prom)] == [1.0, 10.0, 0.0]
    assert all(is_bounded(m) for m in (error_rate, latency, prom))


@pytest.mark.parametrize(
    ("value", "relative", "absolute"),
    [("20%", 0.2, None), ("5.5 %", 0.055, None), (0.01, None, 0.01), ("50ms", None, 0.05)],
)
def test_max_increase_forms(value: Any, relative: float | None, absolute: float | None) -> None:
    metric = MetricSpec(name="m", query="latency_p99", compare="baseline", max_increase=value)
    assert metric.max_increase is not None
    assert metric.max_increase.relative == (pytest.approx(relative) if relative else None)
    assert metric.max_increase.absolute == (pytest.approx(absolute) if absolute else None)


BAD_METRICS: list[tuple[dict[str, Any], str]] = [
    ({"query": "errors"}, "query 'errors' is not one of them"),
    ({"query": "error_rate", "failure_condition": "result >"}, "ends too early (at column 9)"),
    ({"query": "error_rate", "failure_condition": "reslt > 1"}, "unknown name 'reslt'"),
    ({"query": "error_rate", "failure_condition": "result > baseline"}, "needs compare"),
    ({"query": "error_rate", "max_increase": "20%"}, "need compare: baseline"),
    ({"query": "error_rate", "compare": "baseline"}, "needs max_increase, a judge"),
    ({"query": "error_rate", "compare": "baseline", "max_increase": "lots"}, "not a max_increase"),
    ({"query": "request_rate", "compare": "baseline", "judge": {}}, "per-request samples"),
    ({"provider": {"prometheus": {"address": "http://x"}}}, "needs a query"),
    ({"provider": {"web": {"url": "http://x"}}, "query": "q"}, "takes no query"),
    ({"provider": {"command": ["true"]}, "compare": "baseline", "max_increase": 1}, "works with"),
    ({"provider": {"web": {"url": "http://x"}, "command": ["true"]}}, "exactly one of"),
    ({"provider": "grafana"}, "router"),
    ({"query": "error_rate", "failure_limit": -1}, "greater than or equal to 0"),
    ({"query": "error_rate", "count": 0}, "greater than or equal to 1"),
    ({"query": "error_rate", "interval": "soon"}, "not a duration"),
    ({"query": "error_rate", "count": 3}, "needs an interval"),
    ({"query": "error_rate", "failureLimit": 1}, "Extra inputs"),
    (
        {
            "query": "latency_p99",
            "compare": "baseline",
            "judge": {"mann_whitney": {"confidence": 1}},
        },
        "less than 1",
    ),
]


@pytest.mark.parametrize(("fields", "fragment"), BAD_METRICS)
def test_bad_metrics_are_refused_with_a_reason(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MetricSpec.model_validate({"name": "m", **fields})
    assert fragment in str(caught.value)


def test_templates_and_refs() -> None:
    spec = AnalysisSpec.model_validate(
        {
            "templates": {
                "a": {"metrics": [{"name": "x", "query": "error_rate"}], "dry_run": ["x"]},
                "b": {"metrics": [{"name": "y", "query": "latency_p99"}]},
                "c": {"metrics": [{"name": "x", "query": "request_rate"}]},
            }
        }
    )
    resolved = resolve(spec, AnalysisRef(templates=["a", "b"], dry_run=["y"]))
    assert [m.name for m in resolved.metrics] == ["x", "y"]
    assert resolved.dry_run == {"x", "y"}
    with pytest.raises(ValueError, match="'nope' is not defined"):
        resolve(spec, AnalysisRef(templates=["nope"]))
    with pytest.raises(ValueError, match="in both templates 'a' and 'c'"):
        resolve(spec, AnalysisRef(templates=["a", "c"]))
    with pytest.raises(ValueError, match="unknown metric"):
        resolve(spec, AnalysisRef(templates=["b"], dry_run=["zz"]))
    with pytest.raises(ValidationError, match="appears twice"):
        AnalysisSpec.model_validate(
            {"templates": {"t": {"metrics": [{"name": "x", "query": "error_rate"}] * 2}}}
        )
    unbounded = MetricSpec(name="bg", query="error_rate", interval=5)
    assert not is_bounded(unbounded)


def test_gate_smoke_and_notify_specs() -> None:
    smoke = SmokeSpec.model_validate(
        yaml.safe_load(
            """
timeout: 60s
checks:
  - {name: home, request: GET /, expect: {status: 200, body_contains: "ok"}}
  - {name: login, request: POST /login, json: {user: smoke},
     expect: {status: 200, json: {ok: true}}, max_latency: 500ms}
  - {name: suite, command: ["pytest", "tests/smoke", "-q"]}
"""
        )
    )
    login = smoke.checks[1]
    assert (login.method, login.path, login.json_, login.max_latency) == (
        "POST",
        "/login",
        {"user": "smoke"},
        0.5,
    )
    assert login.expect is not None and login.expect.json_ == {"ok": True}
    assert GateSpec.model_validate({"command": ["pytest", "-q"], "timeout": "10m"}).timeout == 600
    notify = NotifySpec.model_validate({"webhook": "http://127.0.0.1:9/h", "events": ["started"]})
    assert notify.format == "json"
    assert "completed" in NotifySpec(webhook="http://x").events


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"checks": [{"name": "a", "request": "FETCH /"}]}, "should look like 'GET /path'"),
        ({"checks": [{"name": "a", "request": "GET nopath"}]}, "should look like"),
        ({"checks": [{"name": "a"}]}, "exactly one of request, command or browser"),
        ({"checks": [{"name": "a", "command": ["x"], "body": "b"}]}, "no request fields"),
        ({"checks": [{"name": "a", "request": "GET /", "json": {}, "body": "x"}]}, "not both"),
        ({"checks": [{"name": "a", "request": "GET /", "expect": {"status": 99}}]}, "HTTP status"),
        ({"checks": [{"name": "a", "request": "GET /"}] * 2}, "used twice"),
        ({"checks": []}, "at least 1"),
    ],
)
def test_bad_smoke_specs(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SmokeSpec.model_validate(data)
    assert fragment in str(caught.value)


def test_bad_notify() -> None:
    with pytest.raises(ValidationError, match="Input should be"):
        NotifySpec.model_validate({"webhook": "http://x", "events": ["exploded"]})
    with pytest.raises(ValidationError, match="pattern"):
        NotifySpec.model_validate({"webhook": "ftp://x"})


def test_a_bad_condition_is_a_spec_error_with_file_line_and_column() -> None:
    from zerodown.core.errors import SpecError
    from zerodown.spec.load import parse_model

    text = """templates:
  health:
    metrics:
      - name: error-rate
        query: error_rate
        interval: 1s
        failure_condition: "result >> 0.05"
"""
    with pytest.raises(SpecError) as caught:
        parse_model(text, AnalysisSpec, file="zerodown.yaml")
    assert str(caught.value) == (
        "zerodown.yaml:7: templates.health.metrics.0.failure_condition: "
        "bad condition 'result >> 0.05': unexpected '>' (at column 9)"
    )
