"""The web and command providers, and the runner, against real servers and processes."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from typing import Any

import pytest
from analysis_kit import Site

from support.services import free_port
from zerodown.checkers.analysis import Analyses, AnalysisRunner
from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Phase, RunState
from zerodown.metrics.base import measure
from zerodown.spec.analysis import MetricSpec

pytestmark = pytest.mark.anyio

CTX = AnalysisContext(service="shop", canary="v2", stable="v1", now=time.time())


def web(url: str, **fields: Any) -> MetricSpec:
    provider = {"web": {"url": url, **fields.pop("web", {})}}
    return MetricSpec.model_validate({"name": "w", "provider": provider, **fields})


def command(argv: list[str], **fields: Any) -> MetricSpec:
    return MetricSpec.model_validate({"name": "c", "provider": {"command": argv}, **fields})


# ------------------------------------------------------------------ web


async def test_web_picks_a_json_field_and_applies_the_condition(site: Site) -> None:
    site.route("GET", "/stats/v2", (200, {"data": {"items": [{"error_rate": 0.02}]}}))
    metric = web(
        site.url + "/stats/{canary}",
        web={"json_path": "data.items.0.error_rate", "headers": {"X-Release": "{canary}"}},
        success_condition="result < 0.05",
    )
    m = await measure(metric, CTX)
    assert m.phase is Phase.SUCCESSFUL, m.message
    assert m.value == 0.02
    assert site.requests[-1][1] == "/stats/v2"  # {canary} substituted
    site.route("GET", "/stats/v2", (200, {"data": {"items": [{"error_rate": 0.2}]}}))
    m = await measure(metric, CTX)
    assert m.phase is Phase.FAILED and m.message == "not (0.2 < 0.05)"


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ((200, {"data": {}}), "the body has no 'data.items'"),
        ((200, {"data": {"items": ["high"]}}), "expected a number"),
        ((200, "not json"), "not JSON"),
        ((503, "overloaded"), "HTTP 503: overloaded"),
    ],
)
async def test_web_problems_are_error_measurements(
    site: Site, answer: tuple[int, Any], fragment: str
) -> None:
    site.route("GET", "/m", answer)
    m = await measure(web(site.url + "/m", web={"json_path": "data.items.0"}), CTX)
    assert m.phase is Phase.ERROR
    assert fragment in m.message


async def test_web_unreachable_is_an_error_measurement() -> None:
    m = await measure(web(f"http://127.0.0.1:{free_port()}/x"), CTX)
    assert m.phase is Phase.ERROR
    assert "ConnectError" in m.message


async def test_web_timeout_is_an_error_measurement(site: Site) -> None:
    def slow(_body: bytes) -> tuple[int, str]:
        time.sleep(1.0)
        return 200, "1"

    site.route("GET", "/slow", slow)
    m = await measure(web(site.url + "/slow", timeout="200ms"), CTX)
    assert m.phase is Phase.ERROR
    assert "timeout" in m.message.lower() or "Timeout" in m.message


# ------------------------------------------------------------------ command


@pytest.mark.parametrize(
    ("script", "fields", "phase", "fragment"),
    [
        ("print(0.3)", {"failure_condition": "result > 0.2"}, Phase.FAILED, "0.3 > 0.2"),
        (
            "print('noise'); print(0.1)",
            {"failure_condition": "result > 0.2"},
            Phase.SUCCESSFUL,
            "not (0.1 > 0.2)",  # the last line is the result
        ),
        ("import sys; sys.exit(0)", {}, Phase.SUCCESSFUL, "exited 0"),
        ("import sys; print('boom'); sys.exit(3)", {}, Phase.FAILED, "exited 3: boom"),
        (
            "import sys; sys.exit(3)",
            {"success_condition": "result == 3"},
            Phase.SUCCESSFUL,
            "3 == 3",
        ),
        ("import sys; print(1); sys.exit(2)", {}, Phase.ERROR, "exited 2"),
        (
            "import os; print(1 if os.environ['ZERODOWN_CANARY'] == 'v2' else 0)",
            {"success_condition": "result == 1"},
            Phase.SUCCESSFUL,
            "1 == 1",
        ),
    ],
)
async def test_command(script: str, fields: dict[str, Any], phase: Phase, fragment: str) -> None:
    m = await measure(command([sys.executable, "-c", script], **fields), CTX)
    assert m.phase is phase, m.message
    assert fragment in m.message


async def test_command_substitutes_placeholders() -> None:
    metric = command(
        [
            sys.executable,
            "-c",
            "import sys; print(1 if sys.argv[1:] == ['v2', 'v1', 'shop'] else 0)",
            "{canary}",
            "{stable}",
            "{service}",
        ],
        success_condition="result == 1",
    )
    assert (await measure(metric, CTX)).phase is Phase.SUCCESSFUL


async def test_command_missing_binary_and_timeout_are_errors() -> None:
    m = await measure(command(["/nonexistent/zerodown-probe"]), CTX)
    assert m.phase is Phase.ERROR and "cannot run" in m.message
    started = time.monotonic()
    m = await measure(
        command([sys.executable, "-c", "import time; time.sleep(30)"], timeout="300ms"), CTX
    )
    assert m.phase is Phase.ERROR and "timeout" in m.message
    assert time.monotonic() - started < 10  # killed, not waited for


# ------------------------------------------------------------------ the runner


async def test_runner_measures_at_intervals_until_the_count(site: Site) -> None:
    values = iter([0.01, 0.02, 0.01])
    site.route("GET", "/v", lambda _b: (200, {"value": next(values)}))
    metric = web(
        site.url + "/v",
        web={"json_path": "value"},
        interval="100ms",
        count=3,
        failure_condition="result > 0.05",
    )
    updates: list[int] = []
    runner = AnalysisRunner(
        [metric], CTX, on_update=lambda result, state: updates.append(len(state.of("w")))
    )
    result = await asyncio.wait_for(runner.run(), 10)
    assert result.phase is Phase.SUCCESSFUL, result.reason
    assert updates == [1, 2, 3]
    times = [m.started_at for m in runner.state.of("w")]
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(times))


async def test_runner_stops_at_the_first_failure_with_the_reason(site: Site) -> None:
    values = iter([0.01, 0.21, 0.01, 0.01])
    site.route("GET", "/v", lambda _b: (200, {"value": next(values)}))
    metric = MetricSpec.model_validate(
        {
            "name": "error-rate",
            "provider": {"web": {"url": site.url + "/v", "json_path": "value"}},
            "interval": "50ms",
            "count": 4,
            "failure_condition": "result > 0.05",
        }
    )
    result = await asyncio.wait_for(AnalysisRunner([metric], CTX).run(), 10)
    assert result.phase is Phase.FAILED
    assert result.reason == "error-rate: 0.21 > 0.05 (1 of 2 failed)"


async def test_runner_counts_consecutive_errors(site: Site) -> None:
    metric = web(
        f"http://127.0.0.1:{free_port()}/v", interval="20ms", count=10, consecutive_error_limit=2
    )
    result = await asyncio.wait_for(AnalysisRunner([metric], CTX).run(), 10)
    assert result.phase is Phase.ERROR
    assert "3 measurements in a row could not be taken" in result.reason


async def test_runner_can_be_cancelled_at_once() -> None:
    metric = command(
        [sys.executable, "-c", "import time; time.sleep(30)"], timeout="60s", initial_delay=0
    )
    task = asyncio.create_task(AnalysisRunner([metric], CTX).run())
    await asyncio.sleep(0.3)
    task.cancel()
    # Ends with the cancel, not with the command's 30 s (the bound is far from both).
    done, _ = await asyncio.wait({task}, timeout=15)
    assert task in done and task.cancelled()


async def test_runner_resumes_from_persisted_state(site: Site) -> None:
    site.route("GET", "/v", (200, {"value": 0.01}))
    metric = web(site.url + "/v", web={"json_path": "value"}, interval="50ms", count=3)
    first = AnalysisRunner([metric], CTX)
    while len(first.state.of("w")) < 2:
        await first.step()
        await asyncio.sleep(0.02)
    saved = first.state.to_json()  # the controller dies here
    second = AnalysisRunner([metric], CTX, state=RunState.from_json(saved))
    result = await asyncio.wait_for(second.run(), 10)
    assert result.phase is Phase.SUCCESSFUL
    assert len(second.state.of("w")) == 3
    assert len(site.requests) == 3  # nothing measured twice


async def test_terminate_ends_a_background_analysis(site: Site) -> None:
    site.route("GET", "/v", (200, {"value": 0.01}))
    metric = web(site.url + "/v", web={"json_path": "value"}, interval="50ms")  # no count
    runner = AnalysisRunner([metric], CTX)
    task = asyncio.create_task(runner.run())
    for _ in range(200):  # until two measurements are in, however busy the machine is
        if len(runner.state.of("w")) >= 2:
            break
        await asyncio.sleep(0.02)
    assert not task.done()
    runner.terminate()
    result = await asyncio.wait_for(task, 5)
    assert result.phase is Phase.SUCCESSFUL
    assert len(runner.state.of("w")) >= 2


async def test_dry_run_metric_is_measured_but_not_decisive(site: Site) -> None:
    site.route("GET", "/bad", (200, {"value": 0.9}))
    site.route("GET", "/good", (200, {"value": 0.0}))
    bad = MetricSpec.model_validate(
        {
            "name": "bad",
            "provider": {"web": {"url": site.url + "/bad", "json_path": "value"}},
            "failure_condition": "result > 0.5",
        }
    )
    good = MetricSpec.model_validate(
        {
            "name": "good",
            "provider": {"web": {"url": site.url + "/good", "json_path": "value"}},
            "failure_condition": "result > 0.5",
        }
    )
    runner = AnalysisRunner([bad, good], CTX, dry_run=["bad"])
    result = await asyncio.wait_for(runner.run(), 10)
    assert result.phase is Phase.SUCCESSFUL
    assert {r.name: r.phase for r in result.metrics} == {
        "bad": Phase.FAILED,
        "good": Phase.SUCCESSFUL,
    }


@pytest.mark.slow  # over half a second: the full suite runs it
async def test_analyses_supervises_runs_by_key(site: Site) -> None:
    site.route("GET", "/v", (200, {"value": 0.01}))
    bounded = web(site.url + "/v", web={"json_path": "value"}, interval="50ms", count=2)
    open_ended = web(site.url + "/v", web={"json_path": "value"}, interval="50ms")
    seen: list[tuple[str, Phase, int]] = []
    done = asyncio.Event()

    def persist(key: str, result: Any, state: RunState) -> None:
        seen.append((key, result.phase, len(state.of("w"))))
        if key == "r1/step-1" and result.completed:
            done.set()

    analyses = Analyses(on_update=persist)
    try:
        analyses.ensure("r1/step-1", [bounded], CTX)
        analyses.ensure("r1/step-1", [bounded], CTX)  # already running: nothing new
        analyses.ensure("r1/background", [open_ended], CTX)
        await asyncio.wait_for(done.wait(), 10)
        result = analyses.result("r1/step-1")
        assert result is not None and result.phase is Phase.SUCCESSFUL
        assert [n for k, _p, n in seen if k == "r1/step-1"] == [1, 2]
        analyses.ensure("r1/step-1", [bounded], CTX)  # completed: not started again
        assert analyses.keys() == ["r1/background"]
        await analyses.cancel("r1/background")
        assert analyses.keys() == []
        # A request already on the wire when the cancel came may still arrive; after that, a
        # run still measuring every 50ms would add about four in each 0.2 s.
        await asyncio.sleep(0.2)
        requests = len(site.requests)
        await asyncio.sleep(0.2)
        assert len(site.requests) == requests  # cancelled means no more measurements
    finally:
        await analyses.aclose()
