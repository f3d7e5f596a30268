"""Operator commands as pure status changes. The API applies one, persists it, and wakes the
engine, whose next pass (at once) turns it into route changes."""

from __future__ import annotations

from dataclasses import replace

from zerodown.core.errors import StateError
from zerodown.core.model import CheckState, Rollout, RolloutPhase, ServiceStatus


def start_rollout(
    status: ServiceStatus,
    *,
    revision: int,
    version: str,
    strategy: str,
    now: float,
    rollback: bool = False,
) -> ServiceStatus:
    """A new rollout; the store marks an active one for another version as superseded."""
    rollout = Rollout(
        revision=revision,
        version=version,
        strategy=strategy,
        started_at=now,
        previous=status.stable,
        step_started_at=now,
        progress_at=now,
        rollback=rollback,
        reason="rollback" if rollback else "deploy",
    )
    return replace(status, rollout=rollout, stopping=False)


def _active(status: ServiceStatus, command: str) -> Rollout:
    rollout = status.rollout
    if rollout is None or not rollout.active:
        raise StateError(f"no rollout is in progress; nothing to {command}")
    return rollout


def promote(status: ServiceStatus, *, full: bool, steps: int, now: float) -> ServiceStatus:
    """The next step (or past all of them); an inconclusive analysis counts as passed, since a
    person has now decided."""
    rollout = _active(status, "promote")
    step = steps if full else rollout.step + 1
    if rollout.strategy == "blue_green":
        step = 1
    overridden = {
        key: replace(
            check,
            state=CheckState.PASSED,
            reason=f"promoted by a person despite: {check.reason}",
            finished_at=now,
        )
        for key, check in rollout.checks.items()
        if check.state is CheckState.INCONCLUSIVE
    }
    rollout = replace(rollout, checks={**rollout.checks, **overridden})
    moved = replace(
        rollout,
        phase=RolloutPhase.PROGRESSING,
        step=min(step, max(steps, 1)),
        step_started_at=now,
        progress_at=now,
        pause_reason="",
    )
    return replace(status, rollout=moved)


def abort(status: ServiceStatus, *, who: str, now: float) -> ServiceStatus:
    rollout = _active(status, "abort")
    ended = replace(
        rollout,
        phase=RolloutPhase.ABORTED,
        finished_at=now,
        reason=f"aborted by {who}",
    )
    return replace(status, rollout=ended)


def pause(status: ServiceStatus, *, who: str, now: float) -> ServiceStatus:
    rollout = _active(status, "pause")
    return replace(
        status,
        rollout=replace(rollout, phase=RolloutPhase.PAUSED, pause_reason=f"paused by {who}"),
    )


def resume(status: ServiceStatus, *, now: float) -> ServiceStatus:
    rollout = _active(status, "resume")
    return replace(
        status,
        rollout=replace(rollout, phase=RolloutPhase.PROGRESSING, pause_reason="", progress_at=now),
    )


def retry(status: ServiceStatus, *, now: float) -> ServiceStatus:
    rollout = status.rollout
    if rollout is None or rollout.phase not in (RolloutPhase.ABORTED, RolloutPhase.FAILED):
        raise StateError("only an aborted or failed rollout can be retried")
    if rollout.version == status.stable:
        raise StateError(f"{rollout.version} is already the stable release")
    again = replace(
        rollout,
        phase=RolloutPhase.PROGRESSING,
        step=0,
        step_started_at=now,
        progress_at=now,
        finished_at=None,
        reason="retried",
        pause_reason="",
        previous=status.stable,
        switched_at=None,
        checks={},  # a new attempt: the gate, analyses and smoke tests run again
    )
    return replace(status, rollout=again)


def replace_phase(rollout: Rollout, phase: RolloutPhase, now: float, reason: str) -> Rollout:
    return replace(rollout, phase=phase, finished_at=now, reason=reason)
