"""The dashboard charts' data: samples bucketed per release, thresholds read from conditions."""

from __future__ import annotations

import pytest

from zerodown.api.series import MAX_POINTS, buckets, thresholds
from zerodown.spec.model import Spec


def test_buckets_count_rate_errors_and_p99_per_release() -> None:
    samples = {
        "v1": [(100.2, 0.010, 200), (100.7, 0.030, 200), (102.5, 0.020, 503)],
        "v2": [(101.1, 0.100, 500)],
    }
    got = buckets(samples, start=100.0, end=103.0)
    assert got["start"] == 100.0 and got["step"] == 1.0
    v1, v2 = got["releases"]["v1"], got["releases"]["v2"]
    assert v1["rate"] == [2.0, 0.0, 1.0] and v1["errors"] == [0.0, None, 1.0]
    assert v1["p99"][0] == pytest.approx(0.0298) and v1["p99"][1] is None
    assert v2["rate"] == [0.0, 1.0, 0.0] and v2["errors"] == [None, 1.0, None]


def test_a_long_window_has_at_most_max_points() -> None:
    got = buckets({"v1": [(0.0, 0.01, 200), (3599.0, 0.01, 200)]}, start=0.0, end=3600.0)
    assert len(got["releases"]["v1"]["rate"]) <= MAX_POINTS and got["step"] == 12.0
    assert sum(r * got["step"] for r in got["releases"]["v1"]["rate"]) == 2  # nothing lost


def test_thresholds_of_plain_conditions_on_charted_router_metrics() -> None:
    metrics = [
        {"name": "errors", "query": "error_rate", "failure_condition": "result > 0.05"},
        {"name": "slow", "query": "latency_p99", "failure_condition": "result >= 0.5"},
        {"name": "busy", "query": "request_rate", "success_condition": "result > 10"},
        {"name": "median", "query": "latency_p50", "failure_condition": "result > 0.1"},
        {
            "name": "vs",
            "query": "error_rate",
            "compare": "baseline",
            "failure_condition": "result > baseline + 0.01",
        },
    ]
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"]},
            "analysis": {"templates": {"health": {"metrics": metrics}}},
        }
    )
    assert [(t["chart"], t["value"], t["label"]) for t in thresholds(spec)] == [
        ("errors", 0.05, "health/errors fails when result > 0.05"),
        ("p99", 0.5, "health/slow fails when result >= 0.5"),
        ("rate", 10.0, "health/busy passes when result > 10"),
    ]  # p50 is not charted; a comparison with the baseline is no fixed line
    assert thresholds(None) == []
