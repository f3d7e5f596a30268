"""`router.workers`: the spec field, and how the workers' answers merge into one router's."""

from __future__ import annotations

import os
from pathlib import Path

from support.specs import HEAD, refusal
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats
from zerodown.paths import Paths
from zerodown.routers.proxy.stats import ReleaseCounters, merge_answers, merge_stats_json
from zerodown.routers.proxy.workers import (
    all_known,
    merge_backends,
    merge_samples,
    merge_stats,
)
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec


def test_workers_default_to_one_and_auto_is_the_cores() -> None:
    assert parse_model(HEAD, Spec, file="z.yaml").router.worker_count == 1
    spec = parse_model(HEAD + "router: {workers: auto}\n", Spec, file="z.yaml")
    assert spec.router.worker_count == os.cpu_count()
    assert parse_model(HEAD + "router: {workers: 3}\n", Spec, file="z.yaml").router.workers == 3


def test_workers_are_refused_with_their_line() -> None:
    said = refusal("router:\n  listen: 127.0.0.1:8080\n  workers: 0\n")
    assert said.startswith("zerodown.yaml:5: router.workers"), said
    said = refusal("router:\n  kind: nginx\n  workers: 2\n")
    assert "zerodown.yaml:3: router" in said and "builtin router" in said, said


def test_each_worker_has_its_own_admin_socket_and_pid_file(tmp_path: Path) -> None:
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    assert paths.router_worker_socket(0) == paths.router_socket
    assert paths.router_worker_pid(0) == paths.router_pid
    assert paths.router_worker_socket(1).name == "router-w1.sock"
    assert paths.router_worker_pid(2).name == "router-w2.pid"


def stats(requests: int, errors: int, latency: float, counts: tuple[int, ...]) -> ReleaseStats:
    return ReleaseStats(
        requests=requests,
        responses_5xx=errors,
        latency_sum=latency,
        latency_counts=counts,
    )


def test_counters_samples_and_loads_add_up() -> None:
    merged = merge_stats(
        [
            {"v1": stats(10, 1, 0.5, (7, 3)), "v2": stats(4, 0, 0.1, (4, 0))},
            {"v1": stats(5, 2, 0.25, (1, 4))},
        ]
    )
    assert merged == {"v1": stats(15, 3, 0.75, (8, 7)), "v2": stats(4, 0, 0.1, (4, 0))}
    assert merge_samples([[(1.0, 0.1, 200), (3.0, 0.1, 200)], [(2.0, 0.2, 502)]]) == [
        (1.0, 0.1, 200),
        (2.0, 0.2, 502),
        (3.0, 0.1, 200),
    ]
    loads = merge_backends(
        [
            {"a:1": BackendLoad("v1", 2, 10, 1)},
            {"a:1": BackendLoad("v1", 1, 5, 0), "b:2": BackendLoad("v2", 0, 3)},
        ]
    )
    assert loads == {"a:1": BackendLoad("v1", 3, 15, 1), "b:2": BackendLoad("v2", 0, 3)}


def test_a_table_runs_when_every_worker_runs_it() -> None:
    assert all_known([True, True]) is True
    assert all_known([True, None]) is None
    assert all_known([None, False]) is False


def test_hold_answers_merge() -> None:
    a = {"holding": True, "seconds_left": 3.0, "held": 2, "released": 2}
    b = {"holding": False, "seconds_left": 5.0, "held": 1, "released": 3}
    assert merge_answers([a, b]) == {"holding": True, "seconds_left": 5.0, "held": 3, "released": 5}


def worker_stats_json(requests: int, held: int, seconds_left: float) -> dict[str, object]:
    counters = ReleaseCounters(10)
    for n in range(requests):
        counters.record(200 if n % 2 else 502, 0.01, 1.0, False)
    return {
        "generation": 3,
        "releases": {"v1": counters.to_json()},
        "backends": {"a:1": {"release": "v1", "inflight": 1, "requests": requests, "tunnels": 0}},
        "tunnels": {"v1": {"opened": 2, "open": 1, "closed_by": {"client": 1}}},
        "hold": {"holding": held > 0, "seconds_left": seconds_left, "held": held},
        "clients": {"connections": 3, "sending_headers": 0},
    }


def test_the_tcp_admin_api_merges_whole_stats_answers() -> None:
    merged = merge_stats_json([worker_stats_json(4, 0, 0.0), worker_stats_json(6, 2, 1.5)])
    v1 = merged["releases"]["v1"]
    assert (v1["requests"], v1["responses_5xx"], v1["codes"]) == (10, 5, {"200": 5, "502": 5})
    assert merged["backends"]["a:1"] == {
        "release": "v1",
        "inflight": 2,
        "requests": 10,
        "tunnels": 0,
    }
    assert merged["tunnels"]["v1"] == {"opened": 4, "open": 2, "closed_by": {"client": 2}}
    assert merged["hold"] == {"holding": True, "seconds_left": 1.5, "held": 2}
    assert merged["clients"]["connections"] == 6 and merged["generation"] == 3
    counters = ReleaseCounters.from_json(v1)
    assert counters.codes == {200: 5, 502: 5} and sum(counters.counts) == 10
