"""The engine's own health (faults.py), safe instance ids, and the core rule that makes a launch
failure end the rollout with its reason. No processes, no sleeping."""

from __future__ import annotations

import re

import pytest

from zerodown.core.commands import start_rollout
from zerodown.core.decide import decide
from zerodown.core.errors import StoreUnavailable
from zerodown.core.model import Instance, InstancePhase, RolloutPhase, ServiceStatus
from zerodown.engine.faults import BACKOFF_MAX, STALL_AFTER, PassHealth, describe
from zerodown.engine.reconciler import instance_id
from zerodown.spec.model import Spec


def test_backoff_doubles_from_a_quarter_second_to_a_cap_and_resets() -> None:
    health = PassHealth(started_at=0.0)
    delays = []
    for n in range(8):
        health.failed(OSError("disk full"), float(n))
        delays.append(health.backoff())
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, BACKOFF_MAX, BACKOFF_MAX, BACKOFF_MAX]
    assert health.passed(10.0) == 8
    assert health.backoff() == 0.0 and health.passed(11.0) == 0


def test_the_same_error_is_reported_once_until_it_is_old() -> None:
    health = PassHealth(started_at=0.0)
    locked = StoreUnavailable("the state store state.db is unavailable: database is locked")
    assert health.failed(locked, 1.0) == f"reconcile pass failed: {locked}"
    assert health.failed(locked, 2.0) is None
    health.passed(3.0)
    assert health.failed(locked, 4.0) is None  # flapping is not a new error either
    assert health.failed(KeyError("x"), 5.0) == "reconcile pass failed: KeyError: 'x'"
    assert health.failed(locked, 1.0 + 601)  # and the same one, ten minutes on


def test_summary_says_stalled_when_no_pass_completed_for_the_limit() -> None:
    health = PassHealth(started_at=100.0)
    assert health.summary(100.0 + STALL_AFTER) == {
        "last_pass": None,
        "stalled_since": None,
        "last_error": None,
    }
    assert health.summary(100.0 + STALL_AFTER + 1)["stalled_since"] == 100.0
    health.passed(200.0)
    health.failed(ValueError("bad"), 201.0)
    summary = health.summary(205.0)
    assert summary["stalled_since"] is None and summary["last_pass"] == 200.0
    assert summary["last_error"] == {
        "at": 201.0,
        "message": "reconcile pass failed: ValueError: bad",
    }
    assert health.summary(200.0 + STALL_AFTER + 1)["stalled_since"] == 200.0


def test_describe_keeps_our_messages_and_names_other_errors_briefly() -> None:
    assert describe(StoreUnavailable("store locked")) == "store locked"
    assert describe(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    long = describe(OSError("x" * 5000))
    assert len(long) == 500 and long.endswith("…")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v2", r"shop-v2-[0-9a-f]{6}"),
        ("1.4.0-rc.1+build", r"shop-1\.4\.0-rc\.1\+build-[0-9a-f]{6}"),
        ("x/y", r"shop-x_y-[0-9a-f]{8}-[0-9a-f]{6}"),
        ("../../etc/passwd", r"shop-etc_passwd-[0-9a-f]{8}-[0-9a-f]{6}"),
        ("v" * 300, r"shop-v{32}-[0-9a-f]{8}-[0-9a-f]{6}"),
        ("/", r"shop-[0-9a-f]{8}-[0-9a-f]{6}"),
        ("v1\n", r"shop-v1-[0-9a-f]{8}-[0-9a-f]{6}"),
    ],
)
def test_instance_ids_never_carry_an_unsafe_version(version: str, expected: str) -> None:
    iid = instance_id("shop", version)
    assert re.fullmatch(expected, iid), iid
    assert "/" not in iid and len(iid) < 120


def test_two_unsafe_versions_alike_once_cleaned_get_different_ids() -> None:
    assert instance_id("shop", "x/y")[:-7] != instance_id("shop", "x?y")[:-7]


SPEC = Spec.model_validate(
    {
        "service": "shop",
        "instances": 2,
        "run": {"command": ["app"]},
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
    }
)
CANNOT_START = "cannot start '/nope/app': not found (run.command, workdir /srv)"


def serving(iid: str, release: str) -> Instance:
    return Instance(
        id=iid,
        release=release,
        address=f"127.0.0.1:{9000 + len(iid)}",
        launched_at=0.0,
        phase=InstancePhase.RUNNING,
        ready=True,
        ready_since=1.0,
    )


def not_launched(iid: str, release: str) -> Instance:
    return Instance(
        id=iid, release=release, address="127.0.0.1:9100", launched_at=50.0, failure=CANNOT_START
    )


def test_a_new_release_that_cannot_launch_fails_the_rollout_with_the_reason() -> None:
    status = start_rollout(
        ServiceStatus("shop", stable="v1"), revision=2, version="v2", strategy="rolling", now=50.0
    )
    instances = [serving("a", "v1"), serving("b", "v1"), not_launched("c", "v2")]
    decision = decide(SPEC, status, instances, 51.0)
    rollout = decision.status.rollout
    assert rollout is not None and rollout.phase is RolloutPhase.FAILED
    assert CANNOT_START in rollout.reason
    assert {i.address for p in decision.status.routes.pools for i in p.backends} == {
        instances[0].address,
        instances[1].address,
    }


def test_a_first_release_that_cannot_launch_fails_instead_of_hanging() -> None:
    status = start_rollout(
        ServiceStatus("shop"), revision=1, version="v1", strategy="rolling", now=50.0
    )
    decision = decide(SPEC, status, [not_launched("a", "v1"), not_launched("b", "v1")], 51.0)
    rollout = decision.status.rollout
    assert rollout is not None and rollout.phase is RolloutPhase.FAILED
    assert CANNOT_START in rollout.reason
