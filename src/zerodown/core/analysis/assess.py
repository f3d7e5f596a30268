"""When to measure, and what the measurements so far say: per metric and for the whole run.

The rules are Argo Rollouts' (analysis/analysis.go, assessMetricStatus and assessRunStatus):

- A metric has FAILED when failed > failure_limit, is INCONCLUSIVE when
  inconclusive > inconclusive_limit, and is in ERROR when consecutive errors exceed
  consecutive_error_limit. Errors do not count towards `count`.
- With a `count`, a metric that reaches it without crossing a limit is SUCCESSFUL; without one
  it runs until the run is terminated (a background analysis when the rollout ends). A metric
  with neither count nor interval is measured once.
- The run is the worst of its decisive metrics (successful < inconclusive < error < failed). As
  soon as one decisive metric fails (or errs, or is inconclusive) the run ends with it: the
  rollout must act in the same pass, not wait for the other metrics.
- Dry-run metrics are measured and shown, and never decide anything.

One rule is zerodown's own: too little traffic is never a pass. A metric that ends while its
last measurement is `insufficient` (fewer than min_samples requests) ends INCONCLUSIVE, and
insufficient measurements before that do not count towards inconclusive_limit, since the
window is still filling.

Measurement timing: a measurement summarises the interval that just ended, so the first is due
one interval after the start (see `zerodown.spec.analysis.first_wait`), the next one interval
after the previous one finished; after an error without interval, ERROR_RETRY seconds later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zerodown.core.analysis.evaluate import fmt
from zerodown.core.analysis.judge import Score, overall
from zerodown.core.analysis.model import SEVERITY, Measurement, Phase, RunState, Verdict
from zerodown.spec.analysis import MetricSpec, first_wait

ERROR_RETRY = 10.0
"""Seconds before re-measuring after an error when the metric has no interval (Argo's default)."""


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    phase: Phase
    successful: int
    failed: int
    inconclusive: int  # counted towards inconclusive_limit
    errors: int
    consecutive_errors: int
    count: int  # measurements that were not errors
    dry_run: bool
    message: str  # why, in words: "0.21 > 0.05 (3 of 5 failed)"
    last: Measurement | None

    @property
    def decisive(self) -> bool:
        return not self.dry_run

    def to_json(self) -> dict[str, Any]:
        """For status, history and the dashboard."""
        return {
            "name": self.name,
            "phase": self.phase.value,
            "message": self.message,
            "successful": self.successful,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "errors": self.errors,
            "consecutive_errors": self.consecutive_errors,
            "count": self.count,
            "dry_run": self.dry_run,
            "last": None if self.last is None else self.last.to_json(),
        }


def effective_count(metric: MetricSpec) -> int | None:
    if metric.count is not None:
        return metric.count
    return 1 if metric.interval is None else None


def assess_metric(
    metric: MetricSpec,
    measurements: Sequence[Measurement],
    *,
    terminating: bool = False,
    dry_run: bool = False,
) -> MetricResult:
    successful = failed = inconclusive = errors = consecutive = count = 0
    for m in measurements:
        if m.phase is Phase.ERROR:
            errors += 1
            consecutive += 1
            continue
        consecutive = 0
        count += 1
        if m.phase is Phase.SUCCESSFUL:
            successful += 1
        elif m.phase is Phase.FAILED:
            failed += 1
        elif m.phase is Phase.INCONCLUSIVE and not m.insufficient:
            inconclusive += 1
    last = measurements[-1] if measurements else None

    def result(phase: Phase, message: str) -> MetricResult:
        return MetricResult(
            name=metric.name,
            phase=phase,
            successful=successful,
            failed=failed,
            inconclusive=inconclusive,
            errors=errors,
            consecutive_errors=consecutive,
            count=count,
            dry_run=dry_run,
            message=message,
            last=last,
        )

    if last is None:
        if terminating:
            return result(Phase.SUCCESSFUL, "ended before its first measurement")
        return result(Phase.PENDING, "waiting for its first measurement")
    total = len(measurements)
    if failed > metric.failure_limit:
        failing = next(m for m in reversed(measurements) if m.phase is Phase.FAILED)
        return result(Phase.FAILED, f"{failing.message} ({failed} of {total} failed)")
    if inconclusive > metric.inconclusive_limit:
        unsure = next(
            m
            for m in reversed(measurements)
            if m.phase is Phase.INCONCLUSIVE and not m.insufficient
        )
        return result(
            Phase.INCONCLUSIVE, f"{unsure.message} ({inconclusive} of {total} inconclusive)"
        )
    if consecutive > metric.consecutive_error_limit:
        return result(
            Phase.ERROR,
            f"{consecutive} measurements in a row could not be taken; last: {last.message}",
        )
    if metric.sequential is not None and last.phase is Phase.SUCCESSFUL:
        # a sequential judge that showed the canary within its tolerance has decided
        return result(Phase.SUCCESSFUL, last.message)
    wanted = effective_count(metric)
    if (wanted is not None and count >= wanted) or terminating:
        counted = [m for m in measurements if m.phase is not Phase.ERROR]
        final = counted[-1] if counted else last
        if final.insufficient or not counted:
            return result(Phase.INCONCLUSIVE, final.message)
        return result(Phase.SUCCESSFUL, _summary(final, successful, count))
    return result(Phase.RUNNING, _summary(last, successful, count))


def _summary(last: Measurement, successful: int, count: int) -> str:
    return f"{last.message or fmt(last.value)} ({successful} of {count} successful)"


def next_due(
    metric: MetricSpec, measurements: Sequence[Measurement], started_at: float
) -> float | None:
    """When the next measurement is due; None when the metric needs no more."""
    if not measurements:
        return started_at + first_wait(metric)
    wanted = effective_count(metric)
    count = sum(1 for m in measurements if m.phase is not Phase.ERROR)
    if wanted is not None and count >= wanted:
        return None
    last = measurements[-1]
    if metric.sequential is not None and last.phase is Phase.SUCCESSFUL:
        return None
    if metric.interval is not None:
        return last.finished_at + metric.interval
    if last.phase is Phase.ERROR:
        return last.finished_at + ERROR_RETRY
    return None


@dataclass(frozen=True, slots=True)
class RunResult:
    phase: Phase
    reason: str
    metrics: tuple[MetricResult, ...]
    due: tuple[str, ...]  # metrics to measure now
    next_at: float | None  # when the next measurement is due, if the run goes on
    score: Score | None  # the judge's summary over metrics that have one

    @property
    def completed(self) -> bool:
        return self.phase.completed

    def to_json(self) -> dict[str, Any]:
        """For status, history and the dashboard: the phase, why, and every metric."""
        return {
            "phase": self.phase.value,
            "reason": self.reason,
            "next_at": self.next_at,
            "metrics": [m.to_json() for m in self.metrics],
            "score": None
            if self.score is None
            else {
                "verdict": self.score.verdict.value,
                "score": self.score.score,
                "counts": {v.value: n for v, n in self.score.counts.items()},
            },
        }


def assess_run(
    metrics: Sequence[MetricSpec],
    state: RunState,
    now: float,
    *,
    dry_run: Iterable[str] = (),
) -> RunResult:
    """The run's phase, its reason, and which metrics are due at `now`."""
    dry = set(dry_run)
    results = [
        assess_metric(m, state.of(m.name), terminating=state.terminated, dry_run=m.name in dry)
        for m in metrics
    ]
    bad = [r for r in results if r.decisive and r.phase in _BAD]
    if bad and not state.terminated:
        # Argo terminates the other metrics once one fails; they end as they stand
        results = [
            r
            if r.phase.completed
            else assess_metric(m, state.of(m.name), terminating=True, dry_run=r.dry_run)
            for m, r in zip(metrics, results, strict=True)
        ]
    score = overall(
        r.last.verdict
        for r in results
        if r.decisive and r.last is not None and r.last.verdict is not None
    )
    decisive = [r for r in results if r.decisive]
    if bad:
        worst = max(bad, key=lambda r: SEVERITY[r.phase])
        return RunResult(worst.phase, _reason(worst), tuple(results), (), None, score)
    if decisive and all(r.phase.completed for r in decisive):
        reason = "; ".join(f"{r.name}: {r.message}" for r in decisive)
        return RunResult(Phase.SUCCESSFUL, reason, tuple(results), (), None, score)
    due: list[str] = []
    next_at: float | None = None
    for metric, r in zip(metrics, results, strict=True):
        if r.phase.completed:
            continue
        at = next_due(metric, state.of(metric.name), state.started_at)
        if at is None:
            continue
        if at <= now:
            due.append(metric.name)
        next_at = at if next_at is None else min(next_at, at)
    if not decisive and all(r.phase.completed for r in results):
        # only dry-run metrics (or none): the run decides nothing, and ends when they are done
        why = "dry run only" if results else "no metrics"
        return RunResult(Phase.SUCCESSFUL, why, tuple(results), (), None, score)
    waiting = [r for r in decisive if not r.phase.completed]
    reason = "measuring: " + "; ".join(f"{r.name}: {r.message}" for r in waiting)
    return RunResult(Phase.RUNNING, reason, tuple(results), tuple(due), next_at, score)


_BAD = (Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE)


def _reason(result: MetricResult) -> str:
    return f"{result.name}: {result.message}"


__all__ = [
    "ERROR_RETRY",
    "MetricResult",
    "RunResult",
    "Verdict",
    "assess_metric",
    "assess_run",
    "effective_count",
    "next_due",
]
