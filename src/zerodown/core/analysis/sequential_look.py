"""One look of a sequential judge: the requests since the last look, in; a measurement, out.

The state between looks is plain JSON in the measurement itself (`Measurement.state`): where
each release's samples were read up to (the router's timestamp of the last one taken) and the
judge's own state. So each look reads only new requests, and a restarted controller goes on from
the stored state instead of starting the evidence again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zerodown.core.analysis.model import Measurement, Phase
from zerodown.core.analysis.sequential import (
    LATENCY_FLOOR,
    LATENCY_WARMUP,
    Decision,
    ErrorRateJudge,
    LatencyJudge,
    Outcome,
)
from zerodown.core.analysis.stats import Sample, is_error
from zerodown.spec.analysis import SequentialJudge

Judge = ErrorRateJudge | LatencyJudge


def cursors(state: Mapping[str, Any] | None, start: float) -> tuple[float, float]:
    """(canary, baseline): read each release's samples after these timestamps."""
    if not state:
        return start, start
    return float(state["canary_since"]), float(state["baseline_since"])


def _judge(spec: SequentialJudge, saved: Mapping[str, Any] | None) -> Judge:
    if spec.metric == "error_rate":
        increase = spec.max_increase or 0.0
        if saved is None:
            return ErrorRateJudge(false_abort=spec.false_abort, max_increase=increase)
        return ErrorRateJudge.from_json(saved, false_abort=spec.false_abort, max_increase=increase)
    floor = LATENCY_FLOOR if spec.ignore_below is None else spec.ignore_below
    warmup = LATENCY_WARMUP if spec.warmup is None else spec.warmup
    if saved is None:
        return LatencyJudge(
            false_abort=spec.false_abort, max_increase=spec.max_increase, floor=floor, warmup=warmup
        )
    return LatencyJudge.from_json(
        saved,
        false_abort=spec.false_abort,
        max_increase=spec.max_increase,
        floor=floor,
        warmup=warmup,
    )


def look(
    spec: SequentialJudge,
    state: Mapping[str, Any] | None,
    canary: Sequence[Sample],
    baseline: Sequence[Sample],
    *,
    start: float,
) -> tuple[Outcome, dict[str, Any]]:
    """Feed the new requests (baseline first: its bounds only tighten, and the canary's bets
    need only be sized before each canary request is seen) and return the outcome and the
    state for the next look. Samples at or before the cursors were taken already: skipped."""
    canary_since, baseline_since = cursors(state, start)
    judge = _judge(spec, None if not state else state["judge"])
    fresh_canary = [s for s in canary if s[0] > canary_since]
    fresh_baseline = [s for s in baseline if s[0] > baseline_since]
    if isinstance(judge, ErrorRateJudge):
        errors = sum(1 for s in fresh_baseline if is_error(s[2]))
        outcome = judge.add_look(
            [is_error(s[2]) for s in fresh_canary], len(fresh_baseline), errors
        )
    else:
        # an unanswered request has no latency worth comparing; the error judge counts it
        if fresh_baseline:
            judge.add_baseline(s[1] for s in fresh_baseline if s[2] >= 100)
        outcome = judge.add_canary(s[1] for s in fresh_canary if s[2] >= 100)
    new_state = {
        "canary_since": max([canary_since, *(s[0] for s in fresh_canary)]),
        "baseline_since": max([baseline_since, *(s[0] for s in fresh_baseline)]),
        "judge": judge.to_json(),
    }
    return outcome, new_state


PHASES = {
    Decision.FAIL: Phase.FAILED,
    Decision.PASS: Phase.SUCCESSFUL,
    Decision.RUNNING: Phase.INCONCLUSIVE,
}


def measurement_of(
    outcome: Outcome, state: Mapping[str, Any], *, started_at: float, finished_at: float
) -> Measurement:
    """Fail and pass decide the metric; while running the look is `insufficient` (it never
    counts towards inconclusive_limit, and a metric that ends still running is inconclusive:
    too little evidence is never a pass). The value is the evidence against the canary (an
    e-value: it fails the canary at 2 / false_abort)."""
    return Measurement(
        phase=PHASES[outcome.decision],
        started_at=started_at,
        finished_at=finished_at,
        value=outcome.evidence,
        samples=outcome.canary_requests,
        insufficient=outcome.decision is Decision.RUNNING,
        message=f"sequential: {outcome.message}",
        state=state,
    )
