"""Route-table validation, counters, Prometheus text and the state file of the built-in router."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zerodown.core.routes import LATENCY_BUCKETS, Backend, Pool, RouteTable, Sticky
from zerodown.routers.proxy.client import router_command
from zerodown.routers.proxy.statefile import StateFileError, load_state, save_state
from zerodown.routers.proxy.stats import ReleaseCounters, prometheus_text
from zerodown.routers.proxy.validate import TableError, check_table, parse_address

GOOD = RouteTable(
    3, (Pool("v1", 100, (Backend("127.0.0.1:9001", "i1"),)),), sticky=Sticky(cookie="zd")
)


def with_(path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD.to_json()))
    keys = path.split(".")
    target = data
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target[k]
    last = keys[-1]
    target[int(last) if last.isdigit() else last] = value
    return data


def test_good_table_round_trips() -> None:
    assert check_table(GOOD.to_json()) == GOOD


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("generation", -1, "generation: expected an integer >= 0"),
        ("generation", "1", "generation: expected an integer >= 0"),
        ("pools.0.weight", True, "pools[0].weight: expected an integer >= 0"),
        ("pools.0.release", "", "pools[0].release: expected a non-empty string"),
        (
            "pools.0.backends.0.address",
            "host",
            'pools[0].backends[0].address: expected "host:port"',
        ),
        ("pools.0.backends.0.address", "h:70000", "pools[0].backends[0].address: port must be"),
        ("pools.0.backends.0.instance", None, "pools[0].backends[0].instance"),
        ("pools", {}, "pools: expected a list"),
        ("matches", [{"release": "v1", "value": "1"}], "matches[0]: set exactly one of"),
        ("matches", [{"release": "v1", "value": "1", "header": "a b"}], "not a valid header"),
        ("sticky", {"cookie": None, "header": None}, "sticky: set `cookie`, `header`"),
        ("preview", 3, "preview: expected a non-empty string"),
    ],
)
def test_bad_tables_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(TableError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_table(with_(path, value))


def test_duplicate_release_is_refused() -> None:
    data = GOOD.to_json()
    data["pools"].append(data["pools"][0])
    with pytest.raises(TableError, match=r"pools\[1\].release: 'v1' appears in two pools"):
        check_table(data)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="host:port"):
        parse_address(":80")


def test_counters_and_prometheus_text() -> None:
    c = ReleaseCounters(samples=3)
    c.record(200, 0.0005, 100.0, transport_error=False)
    c.record(404, 0.003, 101.0, transport_error=False)
    c.record(503, 0.2, 102.0, transport_error=False)
    c.record(502, 20.0, 103.0, transport_error=True)
    s = c.snapshot()
    assert (s.requests, s.responses_4xx, s.responses_5xx, s.transport_errors) == (4, 1, 1, 1)
    assert s.errors == 2
    assert len(s.latency_counts) == len(LATENCY_BUCKETS) + 1
    assert s.latency_counts[0] == 1 and s.latency_counts[2] == 1 and s.latency_counts[-1] == 1
    assert c.samples_since(100.5) == [[101.0, 0.003, 404], [102.0, 0.2, 503], [103.0, 20.0, 502]]
    text = prometheus_text({"v1": c}, [("v1", "127.0.0.1:9001", 2)])
    assert 'zerodown_requests_total{release="v1",code="502"} 1' in text
    assert 'zerodown_request_errors_total{release="v1"} 1' in text
    assert 'zerodown_request_seconds_bucket{release="v1",le="0.001"} 1' in text
    assert 'zerodown_request_seconds_bucket{release="v1",le="0.005"} 2' in text
    assert 'zerodown_request_seconds_bucket{release="v1",le="+Inf"} 4' in text
    assert 'zerodown_request_seconds_count{release="v1"} 4' in text
    assert 'zerodown_backend_inflight{release="v1",backend="127.0.0.1:9001"} 2' in text


def test_state_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path) is None
    save_state(path, GOOD)
    assert load_state(path) == GOOD
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    path.write_text("{")
    with pytest.raises(StateFileError, match=str(path)):
        load_state(path)


def test_router_command() -> None:
    argv = router_command(
        listen="127.0.0.1:8080",
        preview_listen=None,
        admin_socket="/run/a.sock",
        state_file="/var/s.json",
        admin_listen="127.0.0.1:9000",
        admin_token_file="/etc/tok",
    )
    assert argv[1:] == [
        "-m", "zerodown.routers.proxy", "--listen", "127.0.0.1:8080",
        "--admin-socket", "/run/a.sock", "--state-file", "/var/s.json",
        "--admin-listen", "127.0.0.1:9000", "--admin-token-file", "/etc/tok",
    ]  # fmt: skip
