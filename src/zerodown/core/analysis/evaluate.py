"""From a measured value to a measurement phase: conditions, baseline comparison, min_samples.

Conditions follow Argo Rollouts' rules: with only a failure condition, a measurement that does
not meet it is successful; with only a success condition, one that does not meet it has failed;
with both, meeting neither is inconclusive; with neither, any value is successful.

Too little traffic never passes: when the window held fewer than `min_samples` requests (on the
canary or, when comparing, on the baseline), a measurement that did not fail is inconclusive and
flagged `insufficient`. It may still fail an absolute condition: a canary that errs on few
requests is acted on at once. A comparison with the baseline on too few samples, though, is
noise (a cold connection, one slow request), so it neither passes nor fails: it is insufficient.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerodown.core.analysis import expr
from zerodown.core.analysis.judge import JudgeResult
from zerodown.core.analysis.model import Measurement, Phase, Verdict
from zerodown.spec.analysis import MetricSpec


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def substituted(condition: str, env: dict[str, float | None]) -> str:
    """The condition with its names replaced by values: 'result > 0.05' -> '0.21 > 0.05'."""
    tokens = expr.tokenize(condition)
    text = condition
    for token in reversed(tokens):
        if token.kind == "name" and token.text in env:
            start = token.column - 1
            text = text[:start] + fmt(env[token.text]) + text[start + len(token.text) :]
    return text


@dataclass(frozen=True, slots=True)
class Observed:
    """What a provider saw, before the metric's rules turn it into a measurement."""

    value: float | None
    baseline: float | None = None
    samples: int | None = None
    baseline_samples: int | None = None
    judged: JudgeResult | None = None
    note: str = ""  # why value is None, e.g. "no requests in the window"


def measurement(
    metric: MetricSpec, observed: Observed, *, started_at: float, finished_at: float
) -> Measurement:
    """Apply the metric's conditions, comparison, judge and min_samples to what was observed."""

    def done(phase: Phase, message: str, *, insufficient: bool = False) -> Measurement:
        return Measurement(
            phase=phase,
            started_at=started_at,
            finished_at=finished_at,
            value=observed.value,
            baseline=observed.baseline,
            samples=observed.samples,
            insufficient=insufficient,
            verdict=None if observed.judged is None else observed.judged.verdict,
            message=message,
        )

    shortfall = _shortfall(metric, observed)
    if observed.value is None:
        return done(Phase.INCONCLUSIVE, observed.note or "no value", insufficient=True)
    if shortfall is not None and metric.compare == "baseline":
        return done(Phase.INCONCLUSIVE, shortfall, insufficient=True)
    env: dict[str, float | None] = {
        "result": observed.value,
        "baseline": observed.baseline,
        "samples": None if observed.samples is None else float(observed.samples),
    }
    failures: list[str] = []
    passes: list[str] = []

    if metric.compare == "baseline" and metric.max_increase is not None:
        if observed.baseline is None:
            return done(Phase.INCONCLUSIVE, "no baseline value to compare with", insufficient=True)
        limit = metric.max_increase.limit(observed.baseline)
        detail = (
            f"{fmt(observed.value)} vs baseline {fmt(observed.baseline)} "
            f"(+{metric.max_increase.describe()} allowed: {fmt(limit)})"
        )
        (failures if observed.value > limit else passes).append(detail)

    if observed.judged is not None:
        verdict = observed.judged.verdict
        if verdict is Verdict.FAIL:
            failures.append(f"judge {observed.judged.message}")
        elif verdict is Verdict.MARGINAL and shortfall is None:
            return done(Phase.INCONCLUSIVE, f"judge {observed.judged.message}")
        else:
            passes.append(f"judge {observed.judged.message}")

    try:
        condition_phase, condition_text = _conditions(metric, env)
    except expr.ExprError as exc:
        return done(Phase.ERROR, f"cannot evaluate the condition: {exc}")
    if condition_phase is Phase.FAILED:
        failures.append(condition_text)
    elif condition_phase is Phase.INCONCLUSIVE and not failures:
        if shortfall is not None:
            return done(Phase.INCONCLUSIVE, shortfall, insufficient=True)
        return done(Phase.INCONCLUSIVE, condition_text)
    elif condition_text:
        passes.append(condition_text)

    if failures:
        return done(Phase.FAILED, "; ".join(failures))
    if shortfall is not None:
        return done(Phase.INCONCLUSIVE, shortfall, insufficient=True)
    return done(Phase.SUCCESSFUL, "; ".join(passes) or fmt(observed.value))


def _shortfall(metric: MetricSpec, observed: Observed) -> str | None:
    if observed.samples is not None and observed.samples < metric.min_samples:
        return (
            f"too little traffic: {observed.samples} requests to the canary in the window "
            f"(min_samples {metric.min_samples})"
        )
    if observed.baseline_samples is not None and observed.baseline_samples < metric.min_samples:
        return (
            f"too little traffic: {observed.baseline_samples} requests to the baseline in the "
            f"window (min_samples {metric.min_samples})"
        )
    return None


def _conditions(metric: MetricSpec, env: dict[str, float | None]) -> tuple[Phase | None, str]:
    """Argo's evaluation of success/failure conditions; (None, "") when there are none."""
    failure = metric.failure_condition
    success = metric.success_condition
    if failure is None and success is None:
        return None, ""
    failed = failure is not None and expr.evaluate_condition(failure, env)
    succeeded = success is not None and expr.evaluate_condition(success, env)
    if failure is not None and failed:
        return Phase.FAILED, substituted(failure, env)
    if success is not None and failure is None and not succeeded:
        return Phase.FAILED, f"not ({substituted(success, env)})"
    if success is not None and failure is not None and not succeeded:
        return (
            Phase.INCONCLUSIVE,
            f"neither {substituted(failure, env)} nor {substituted(success, env)}",
        )
    if success is not None:
        return Phase.SUCCESSFUL, substituted(success, env)
    assert failure is not None
    return Phase.SUCCESSFUL, f"not ({substituted(failure, env)})"
