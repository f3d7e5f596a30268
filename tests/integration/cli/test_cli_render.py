"""The human form of `status` and `history`, fed with JSON captured from a real run.

states/*.json were written by `zerodown status --json` / `history --json` against a real
controller (the sample app, a canary with a gate, smoke checks and an analysis step, paused at
its third step; then aborted). Each test changes what it needs, so the many states a rollout
can be in are rendered without running one each time.
"""

from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from zerodown.cli.render import RECENT_ERROR, controller_health, history_view, status_view

STATES = Path(__file__).parent / "states"


def state(name: str) -> dict[str, Any]:
    return dict(json.loads((STATES / f"{name}.json").read_text()))


def text(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_status_with_checks_renders_each_check() -> None:
    """Regression: the loop over checks rebound `state` and crashed with TypeError."""
    shown = text(status_view(state("canary_paused_with_checks")))
    for check, why in [
        ("gate", "gate `true` passed"),
        ("smoke:pre", "1 checks passed"),
        ("analysis:step-2", "error-rate: not (0 > 0.5)"),
    ]:
        line = next(row for row in shown.splitlines() if f" {check} " in row)
        assert "passed" in line and why in line, shown
    assert "✓  1.  weight 50%" in shown and "▶  3.  pause" in shown
    assert "paused     step 3/4: paused until `zerodown promote`" in shown
    assert "v1: 2 ready, v2: 1 ready" in shown


def test_every_check_kind_and_outcome() -> None:
    doc = state("canary_paused_with_checks")
    gate = doc["status"]["rollout"]["checks"]["gate"]
    checks = {
        "gate": {**gate, "state": "failed", "reason": "gate `pytest -q` exited 1"},
        "migrate": {**gate, "kind": "migrate", "state": "running", "reason": ""},
        "analysis:background": {**gate, "kind": "analysis", "state": "inconclusive"},
        "smoke:post": {**gate, "kind": "smoke-post", "state": "passed", "reason": None},
    }
    doc["status"]["rollout"]["checks"] = checks
    shown = text(status_view(doc))
    assert "gate `pytest -q` exited 1" in shown
    for key, outcome in [
        ("migrate", "running"),
        ("analysis:background", "inconclusive"),
        ("smoke:post", "passed"),
    ]:
        assert any(key in row and outcome in row for row in shown.splitlines()), shown


def test_strings_from_the_controller_keep_their_brackets() -> None:
    doc = state("canary_aborted")
    rollout = doc["status"]["rollout"]
    rollout["reason"] = "smoke GET /[a-z]+ failed: [bold]500[/bold]"
    rollout["checks"]["gate"]["reason"] = "expected [red]ok[/]"
    doc["instances"][0]["failure"] = "exited [1]"
    doc["status"]["last_decision"] = "abort [now]"
    shown = text(status_view(doc))
    for literal in ("/[a-z]+ failed: [bold]500[/bold]", "expected [red]ok[/]", "exited [1]"):
        assert literal in shown, shown
    assert "abort [now]" in shown


def test_an_aborted_rollout() -> None:
    shown = text(status_view(state("canary_aborted")))
    assert "revision 2: v1 → v2 (canary) aborted" in shown
    assert "why        aborted by cli" in shown
    assert "traffic    v1 100%" in shown


def with_health(health: dict[str, Any] | None, now_offset: float = 0.0) -> dict[str, Any]:
    doc = copy.deepcopy(state("canary_paused_with_checks"))
    if health is not None:
        doc["controller"] = health
    doc["now"] += now_offset
    return doc


def test_a_stalled_controller_is_said_first() -> None:
    doc = with_health(None)
    now = doc["now"]
    doc["controller"] = {
        "last_pass": now - 40,
        "stalled_since": now - 37,
        "last_error": {"at": now - 2, "message": "database is locked [state.db]"},
    }
    shown = text(status_view(doc)).splitlines()
    assert shown[0].startswith("controller stalled since ")
    assert "(37s ago): database is locked [state.db]" in shown[0]


@pytest.mark.parametrize(
    ("age", "shown"), [(5.0, True), (RECENT_ERROR - 1, True), (RECENT_ERROR + 5, False)]
)
def test_a_recent_controller_error_is_a_warning(age: float, shown: bool) -> None:
    doc = with_health(None)
    now = doc["now"]
    doc["controller"] = {
        "last_pass": now - 1,
        "stalled_since": None,
        "last_error": {"at": now - age, "message": "router admin socket gone"},
    }
    line = controller_health(doc)
    assert (line is not None) is shown
    if shown:
        assert line is not None and "controller error at" in line
        assert text(status_view(doc)).splitlines()[0].endswith("router admin socket gone")


@pytest.mark.parametrize(
    "health",
    [None, {}, {"last_pass": 1.0, "stalled_since": None, "last_error": None}],
    ids=["older-controller", "empty", "healthy"],
)
def test_a_healthy_or_older_controller_shows_no_health_line(health: Any) -> None:
    doc = with_health(health)
    assert controller_health(doc) is None
    assert text(status_view(doc)).splitlines()[0].startswith("service ")


def test_history() -> None:
    revisions = json.loads((STATES / "history.json").read_text())
    shown = text(history_view(revisions, now=revisions[-1]["created_at"] + 30))
    assert [row.split("│")[1:3] for row in shown.splitlines() if "│ v" in row] == [
        [" 1   ", " v1      "],
        [" 2   ", " v2      "],
    ]
    assert "aborted by cli" in shown and "30s ago" in shown


def test_status_names_the_leader_since_when_and_the_standbys() -> None:
    doc = state("canary_paused_with_checks")
    assert "leader " not in text(status_view(doc))  # a controller without leases
    since = doc["now"] - 125
    doc["leadership"] = {
        "this": "db1:4242",
        "role": "leader",
        "leader": {"id": "db1:4242", "since": since, "for": 125.0, "term": 3, "url": "u"},
        "standbys": [{"id": "db2:77", "url": "v", "seen_ago": 0.4}],
    }
    shown = text(status_view(doc))
    at = time.strftime("%H:%M:%S", time.localtime(since))
    assert f"leader     db1:4242 since {at} (2m); standby: db2:77 (seen 0s ago)" in shown
    assert "stable     v1" in shown  # the labels' column keeps its width
    doc["leadership"].update(role="standby", this="db2:77", standbys=[])
    assert "no standby (answered by standby db2:77)" in text(status_view(doc))
    doc["leadership"]["leader"] = None
    assert "leader     none: the lease is free or ran out" in text(status_view(doc))


@pytest.mark.parametrize(("applied", "shown"), [(False, True), (True, False), (None, False)])
def test_a_table_the_router_does_not_run_yet_is_said(applied: bool | None, shown: bool) -> None:
    doc = state("canary_paused_with_checks")
    doc["routes_applied"] = applied
    lines = text(status_view(doc)).splitlines()
    router = [line for line in lines if line.startswith("router ")]
    assert router == (
        ["router     applying this table; the previous one serves until then"] if shown else []
    )
