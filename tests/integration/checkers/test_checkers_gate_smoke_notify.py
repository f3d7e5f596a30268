"""Gate, smoke checks and webhooks against real processes and a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.services import free_port
from support.site import Site
from zerodown.checkers.gate import run_gate
from zerodown.checkers.smoke import run_smoke
from zerodown.notify import Notifier
from zerodown.spec.gates import GateSpec, SmokeSpec
from zerodown.spec.notify import NotifySpec

pytestmark = pytest.mark.anyio

PY = sys.executable


# ------------------------------------------------------------------ gate


async def test_gate_passes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "marker").write_text("x")
    spec = GateSpec(
        command=[PY, "-c", "import os, sys; sys.exit(0 if os.path.exists('marker') else 1)"],
        workdir="sub",
    )
    result = await run_gate(spec, base_dir=str(tmp_path))
    assert result.passed and result.exit_code == 0, result.reason


async def test_gate_failure_keeps_the_tail_of_the_output() -> None:
    script = "import sys\nfor i in range(2000): print('line', i)\nprint('1 failed, 9 passed')\nsys.exit(1)"
    result = await run_gate(GateSpec(command=[PY, "-c", script]))
    assert not result.passed and result.exit_code == 1
    assert result.reason.startswith("gate `")
    assert result.reason.endswith("1 failed, 9 passed")
    assert "line 0 " not in result.reason  # only the tail


@pytest.mark.slow  # a second or more: the full suite runs it
async def test_gate_timeout_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); print('working', flush=True); time.sleep(60)"
    started = time.monotonic()
    result = await run_gate(GateSpec(command=[PY, "-c", script], timeout=1))
    assert not result.passed and result.exit_code is None
    assert "did not finish within 1s" in result.reason and "working" in result.reason
    assert time.monotonic() - started < 20
    pid = int(pidfile.read_text())
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


async def test_gate_missing_program() -> None:
    result = await run_gate(GateSpec(command=["/nonexistent/pytest"]))
    assert not result.passed and "could not start" in result.reason


# ------------------------------------------------------------------ smoke


def smoke(checks: list[dict[str, Any]], timeout: str = "60s") -> SmokeSpec:
    return SmokeSpec.model_validate({"timeout": timeout, "checks": checks})


async def test_smoke_checks_pass(site: Site) -> None:
    site.route("GET", "/", (200, "all ok"))
    site.route("POST", "/login", lambda body: (200, {"ok": body == b'{"user":"smoke"}', "id": 7}))
    spec = smoke(
        [
            {"name": "home", "request": "GET /", "expect": {"status": 200, "body_contains": "ok"}},
            {
                "name": "login",
                "request": "POST /login",
                "json": {"user": "smoke"},
                "expect": {"status": 200, "json": {"ok": True}},
                "max_latency": "5s",
            },
            {
                "name": "suite",
                "command": [
                    PY,
                    "-c",
                    "import os, sys; sys.exit(0 if os.environ['ZERODOWN_SMOKE_URL'] else 1)",
                ],
            },
        ]
    )
    result = await run_smoke(spec, site.url)
    assert result.passed, result.reason
    assert [c.name for c in result.checks] == ["home", "login", "suite"]
    assert result.reason.startswith("3 smoke check(s) passed")


@pytest.mark.parametrize(
    ("check", "fragment"),
    [
        (
            {"request": "GET /", "expect": {"status": 200, "body_contains": "ok"}},
            "does not contain 'ok'",
        ),
        ({"request": "GET /missing"}, "status 404, expected 200"),
        (
            {"request": "GET /json", "expect": {"json": {"ok": True}}},
            "json 'ok' is 1, expected True",
        ),
        ({"request": "GET /json", "expect": {"json": {"user": {"id": 1}}}}, "json has no 'user'"),
        ({"request": "GET /slow", "max_latency": "50ms"}, "over max_latency 50ms"),
        ({"command": [PY, "-c", "print('2 failed'); raise SystemExit(1)"]}, "exited 1: 2 failed"),
    ],
)
async def test_smoke_failures_say_why(site: Site, check: dict[str, Any], fragment: str) -> None:
    site.route("GET", "/", (200, "fine"))
    site.route("GET", "/json", (200, {"ok": 1}))

    def slow(_body: bytes) -> tuple[int, str]:
        time.sleep(0.3)
        return 200, "late"

    site.route("GET", "/slow", slow)
    result = await run_smoke(
        smoke([{"name": "c", **check}, {"name": "after", "request": "GET /"}]), site.url
    )
    assert not result.passed
    first, after = result.checks
    assert not first.passed and fragment in first.reason, first.reason
    assert after.skipped  # stop at the first failure
    assert result.reason == f"smoke check 'c' failed: {first.reason}"


async def test_smoke_budget_bounds_the_whole_run(site: Site) -> None:
    # The site answers only once the test lets it, after run_smoke has returned: returning at
    # all shows the budget ended the run (no timing assert, which a busy machine could fail).
    answer = threading.Event()

    def held(_body: bytes) -> tuple[int, str]:
        answer.wait(30)
        return 200, "late"

    site.route("GET", "/slow", held)
    try:
        result = await run_smoke(
            smoke([{"name": "slow", "request": "GET /slow"}], timeout="300ms"), site.url
        )
    finally:
        answer.set()
    assert not result.passed and "no response within" in result.checks[0].reason


async def test_smoke_against_nothing_fails_cleanly() -> None:
    result = await run_smoke(
        smoke([{"name": "home", "request": "GET /"}]), f"http://127.0.0.1:{free_port()}"
    )
    assert not result.passed and "ConnectError" in result.checks[0].reason


# ------------------------------------------------------------------ notifications


async def test_webhook_gets_json_events_in_order(site: Site) -> None:
    site.route("POST", "/hook", (200, "ok"))
    spec = NotifySpec(webhook=site.url + "/hook", events=["started", "aborted"])
    async with Notifier([spec], service="shop") as notifier:
        notifier.notify("started", release="v2")
        notifier.notify("step", release="v2")  # not subscribed
        notifier.notify("aborted", release="v2", message="error-rate: 0.21 > 0.05", step=1)
        await notifier.drain(10)
    bodies = [json.loads(body) for _m, _p, body in site.requests]
    assert [b["event"] for b in bodies] == ["started", "aborted"]
    assert bodies[1]["message"] == "error-rate: 0.21 > 0.05"
    assert (
        bodies[1]["service"] == "shop" and bodies[1]["release"] == "v2" and bodies[1]["step"] == 1
    )
    assert all(d.delivered for d in notifier.deliveries)


async def test_slack_format(site: Site) -> None:
    site.route("POST", "/slack", (200, "ok"))
    spec = NotifySpec(webhook=site.url + "/slack", format="slack")
    async with Notifier([spec], service="shop") as notifier:
        notifier.notify("aborted", release="v3", message="error-rate: 0.21 > 0.05")
        await notifier.drain(10)
    assert json.loads(site.requests[0][2]) == {
        "text": ":rotating_light: zerodown: shop v3 aborted: error-rate: 0.21 > 0.05"
    }


async def test_webhook_retries_with_backoff_and_never_blocks(site: Site) -> None:
    answers = iter([503, 500, 200])
    site.route("POST", "/hook", lambda _b: (next(answers), "x"))
    spec = NotifySpec(webhook=site.url + "/hook", retries=5)
    async with Notifier([spec], service="shop", backoff_first=0.05) as notifier:
        # notify() is a plain call that only queues: when it returns, nothing was sent yet,
        # whatever the webhook answers (the failing attempts come later, in the background).
        assert notifier.notify("started") is None
        assert site.requests == [] and notifier.deliveries == []
        await notifier.drain(10)
    assert len(site.requests) == 3
    (delivery,) = notifier.deliveries
    assert delivery.delivered and delivery.attempts == 3


async def test_dead_webhook_gives_up_and_does_not_hold_others(site: Site) -> None:
    site.route("POST", "/hook", (200, "ok"))
    site.route("POST", "/refuses", (400, "bad payload"))
    dead = NotifySpec(webhook=f"http://127.0.0.1:{free_port()}/hook", retries=2)
    refuses = NotifySpec(webhook=site.url + "/refuses", retries=5)
    alive = NotifySpec(webhook=site.url + "/hook")
    async with Notifier([dead, refuses, alive], service="shop", backoff_first=0.05) as notifier:
        notifier.notify("completed")
        await notifier.drain(10)
    by_hook = {d.webhook: d for d in notifier.deliveries}
    assert not by_hook[dead.webhook].delivered and by_hook[dead.webhook].attempts == 3
    assert not by_hook[refuses.webhook].delivered and by_hook[refuses.webhook].attempts == 1
    assert by_hook[alive.webhook].delivered


async def test_close_cancels_pending_retries() -> None:
    spec = NotifySpec(webhook=f"http://127.0.0.1:{free_port()}/hook", retries=20)
    notifier = Notifier([spec], service="shop", backoff_first=5)
    notifier.notify("started")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await notifier.aclose()
    assert time.monotonic() - started < 2
