"""The small translations the export relies on: conditions, durations, JSONPath, names."""

from __future__ import annotations

import pytest

from zerodown.export.kubernetes.analysis import json_path, router_query
from zerodown.export.kubernetes.conditions import to_argo
from zerodown.export.kubernetes.units import dns_label, go_duration, whole_seconds


@pytest.mark.parametrize(
    ("condition", "argo"),
    [
        ("result > 0.05", "result[0] > 0.05"),
        ("result >= 0.95 and result < 2", "(result[0] >= 0.95) && (result[0] < 2)"),
        ("not (result == 0 || result > 1e3)", "!((result[0] == 0) || (result[0] > 1000))"),
        ("result < -0.000001", "result[0] < -0.000001"),
        ("true", "true"),
    ],
)
def test_conditions_in_argo_expression_language(condition: str, argo: str) -> None:
    assert to_argo(condition, result="result[0]") == argo


def test_a_condition_on_a_name_argo_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="'samples' has no counterpart"):
        to_argo("samples > 10", result="result")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (1.25, "1250ms"),
        (30, "30s"),
        (90, "90s"),
        (120, "2m"),
        (7200, "2h"),
        (0, "0s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_whole_seconds_round_up_and_keep_a_floor() -> None:
    assert whole_seconds(0.2, at_least=1) == 1
    assert whole_seconds(2.5) == 3
    assert whole_seconds(3.0000000001) == 3  # float noise is not a second more
    assert whole_seconds(0) == 0


def test_json_path_and_names() -> None:
    assert json_path("data.items.0.value") == "{$.data.items[0].value}"
    assert json_path("ok") == "{$.ok}"
    assert dns_label("Health_Check.v2") == "health-check-v2"


def test_router_queries_read_ingress_nginx_metrics() -> None:
    errors = router_query("error_rate", "30s")
    assert 'status=~"5.."' in errors and "or vector(0)" in errors
    assert errors.count('service="{{args.target-service}}"') == 2
    assert router_query("latency_p90", "1m").startswith("histogram_quantile(0.9, sum by (le)")
    assert "nginx_ingress_controller_request_duration_seconds_bucket" in router_query(
        "latency_p99", "1m"
    )
