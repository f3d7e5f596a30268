"""Smoke checks: a few requests (and commands) against a release, within a total budget.

Run against the new release before it gets real traffic (its preview listener or one of its
instances) and again through the router after the last promotion. Checks run in order and stop
at the first failure, so a rollback starts as early as possible; checks not run say why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from zerodown.checkers.browser import check_page
from zerodown.checkers.proc import run_command
from zerodown.spec.gates import SmokeCheck, SmokeSpec


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    reason: str
    duration: float
    status: int | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "reason": self.reason,
            "duration": round(self.duration, 4),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class SmokeResult:
    passed: bool
    checks: tuple[CheckResult, ...]
    duration: float

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed and not c.skipped]
        if not failed:
            return f"{len(self.checks)} smoke check(s) passed in {self.duration:.2f}s"
        return "; ".join(f"smoke check {c.name!r} failed: {c.reason}" for c in failed)

    def to_json(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "duration": round(self.duration, 3),
            "reason": self.reason,
            "checks": [c.to_json() for c in self.checks],
        }


async def run_smoke(
    spec: SmokeSpec,
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    cwd: str | None = None,
    screenshots: Path | None = None,
) -> SmokeResult:
    """Run every check against `base_url` (e.g. "http://127.0.0.1:8081"); a failed browser
    check leaves a screenshot in `screenshots`."""
    started = time.monotonic()
    deadline = started + spec.timeout
    results: list[CheckResult] = []
    async with httpx.AsyncClient(base_url=base_url, headers=dict(headers or {})) as client:
        for check in spec.checks:
            remaining = deadline - time.monotonic()
            if results and not results[-1].passed:
                results.append(
                    CheckResult(
                        check.name, False, "not run: an earlier check failed", 0, skipped=True
                    )
                )
                continue
            if remaining <= 0:
                results.append(
                    CheckResult(
                        check.name,
                        False,
                        f"not run: the smoke budget of {spec.timeout:g}s was spent",
                        0,
                        skipped=False,
                    )
                )
                continue
            budget = min(remaining, check.timeout or remaining)
            if check.command is not None:
                results.append(await _command_check(check, base_url, budget, cwd))
            elif check.browser is not None:
                started_check = time.monotonic()
                passed, reason, status = await check_page(
                    check.name, check.browser, base_url, budget=budget, screenshots=screenshots
                )
                took = time.monotonic() - started_check
                results.append(CheckResult(check.name, passed, reason, took, status))
            else:
                results.append(await _request_check(client, check, budget))
    passed = all(r.passed for r in results)
    return SmokeResult(passed, tuple(results), time.monotonic() - started)


async def _request_check(
    client: httpx.AsyncClient, check: SmokeCheck, budget: float
) -> CheckResult:
    kwargs: dict[str, Any] = {"headers": check.headers, "timeout": budget}
    if check.json_ is not None:
        kwargs["json"] = check.json_
    elif check.body is not None:
        kwargs["content"] = check.body.encode()
    started = time.monotonic()
    try:
        response = await client.request(check.method, check.path, **kwargs)
    except httpx.TimeoutException:
        return CheckResult(
            check.name,
            False,
            f"{check.request}: no response within {budget:.3g}s",
            time.monotonic() - started,
        )
    except httpx.HTTPError as exc:
        return CheckResult(
            check.name,
            False,
            f"{check.request}: {type(exc).__name__}: {exc}",
            time.monotonic() - started,
        )
    took = time.monotonic() - started
    problem = _problem(check, response, took)
    if problem:
        return CheckResult(
            check.name, False, f"{check.request}: {problem}", took, response.status_code
        )
    return CheckResult(
        check.name,
        True,
        f"{check.request}: {response.status_code} in {took * 1000:.0f}ms",
        took,
        response.status_code,
    )


def _problem(check: SmokeCheck, response: httpx.Response, took: float) -> str:
    expect = check.expect
    statuses = expect.statuses() if expect is not None else [200]
    if response.status_code not in statuses:
        wanted = " or ".join(str(s) for s in statuses)
        return f"status {response.status_code}, expected {wanted}; body: {_clip(response.text)}"
    if (
        expect is not None
        and expect.body_contains is not None
        and expect.body_contains not in response.text
    ):
        return f"body does not contain {expect.body_contains!r}; body: {_clip(response.text)}"
    if expect is not None and expect.json_ is not None:
        try:
            body = response.json()
        except ValueError:
            return f"body is not JSON: {_clip(response.text)}"
        mismatch = _subset_mismatch(expect.json_, body, "")
        if mismatch:
            return mismatch
    if check.max_latency is not None and took > check.max_latency:
        return f"took {took * 1000:.0f}ms, over max_latency {check.max_latency * 1000:.0f}ms"
    return ""


def _subset_mismatch(expected: Any, actual: Any, path: str) -> str:
    """'' when every expected field is present with its value (extra fields are fine)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"json {path or '(body)'} is not an object"
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                return f"json has no {where!r}"
            problem = _subset_mismatch(value, actual[key], where)
            if problem:
                return problem
        return ""
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return f"json {path!r} is {actual!r}, expected {expected!r}"
    return ""


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


async def _command_check(
    check: SmokeCheck, base_url: str, budget: float, cwd: str | None
) -> CheckResult:
    assert check.command is not None
    shown = " ".join(check.command)
    try:
        result = await run_command(
            check.command, timeout=budget, cwd=cwd, env={"ZERODOWN_SMOKE_URL": base_url}
        )
    except OSError as exc:
        return CheckResult(
            check.name, False, f"`{shown}` could not start: {exc.strerror or exc}", 0
        )
    if result.timed_out:
        return CheckResult(
            check.name,
            False,
            f"`{shown}` did not finish within {budget:.3g}s; {result.tail(300)}",
            result.duration,
        )
    if result.exit_code != 0:
        return CheckResult(
            check.name,
            False,
            f"`{shown}` exited {result.exit_code}: {result.tail(300)}",
            result.duration,
        )
    return CheckResult(check.name, True, f"`{shown}` passed", result.duration)
