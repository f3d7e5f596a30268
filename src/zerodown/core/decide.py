"""decide(spec, status, instances, now) -> Decision: the whole brain of a reconcile pass.

Pure: it reads what the engine observed and returns the new status and the actions as data. The
engine persists the status (with every Record) before it carries out any action, so a controller
killed at any point and restarted decides again from the same facts and reaches the same actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from zerodown.core import bluegreen, canary, rolling
from zerodown.core.model import Decision, Instance, RolloutPhase, ServiceStatus
from zerodown.core.plan import Plan
from zerodown.core.routes import RouteTable
from zerodown.spec.model import Spec
from zerodown.spec.types import format_duration


def decide(
    spec: Spec, status: ServiceStatus, instances: Sequence[Instance], now: float
) -> Decision:
    plan = Plan(status=status, instances=instances, now=now)
    if status.stopping:
        plan.retire([i for i in instances if i.live], "zerodown down")
        return plan.decision(RouteTable(generation=status.routes.generation))

    _retire_failed(plan)
    _check_progress_deadline(plan, spec)
    rollout = plan.status.rollout
    if rollout is not None and rollout.active:
        if rollout.strategy == "canary" and spec.strategy.canary is not None:
            table = canary.reconcile(plan, spec)
        elif rollout.strategy == "blue_green" and spec.strategy.blue_green is not None:
            table = bluegreen.reconcile(plan, spec)
        else:
            table = _rolling(plan, spec)
        rollout = plan.status.rollout
        if rollout is not None and rollout.active:
            return plan.decision(table)
    return plan.decision(steady(plan, spec))


def steady(plan: Plan, spec: Spec) -> RouteTable:
    """No rollout is moving: keep `instances` of the stable release serving, and nothing else."""
    stable = plan.status.stable
    if stable is None:
        plan.retire(plan.live(), "no release has ever completed a rollout")
        return RouteTable(generation=plan.status.routes.generation)
    keep = bluegreen.kept_warm(plan, spec)
    return rolling.converge(
        plan, target=stable, instances=spec.instances, rolling=spec.rolling, keep=keep
    )


def fail(plan: Plan, reason: str, *, phase: RolloutPhase = RolloutPhase.FAILED) -> None:
    rollout = plan.status.rollout
    if rollout is None or not rollout.active:
        return
    ended = replace(rollout, phase=phase, reason=reason, finished_at=plan.now)
    plan.update(replace(plan.status, rollout=ended))
    back = f"; traffic stays on {plan.status.stable}" if plan.status.stable else ""
    plan.record(phase.value, f"rollout of {rollout.version} {phase.value}: {reason}{back}")


def complete(plan: Plan, message: str) -> None:
    rollout = plan.status.rollout
    assert rollout is not None
    done = replace(
        rollout, phase=RolloutPhase.COMPLETED, finished_at=plan.now, reason=message, pause_reason=""
    )
    plan.update(replace(plan.status, rollout=done, stable=rollout.version))
    plan.record("complete", f"rollout of {rollout.version} complete: {message}")


def _rolling(plan: Plan, spec: Spec) -> RouteTable:
    rollout = plan.status.rollout
    assert rollout is not None
    table = rolling.converge(
        plan, target=rollout.version, instances=spec.instances, rolling=spec.rolling
    )
    if rolling.is_complete(
        plan, target=rollout.version, instances=spec.instances, rolling=spec.rolling
    ):
        complete(plan, f"{spec.instances} of {spec.instances} instances available")
    else:
        note_progress(plan)
    return table


def note_progress(plan: Plan) -> None:
    """Progress is a launch, a retirement, or a new instance of the release becoming ready."""
    rollout = plan.status.rollout
    assert rollout is not None
    ready_times = [i.ready_since for i in plan.live(rollout.version) if i.ready_since is not None]
    latest = max([rollout.progress_at, *ready_times])
    if plan.launches or plan.retired:
        latest = plan.now
    if latest != rollout.progress_at:
        plan.update(replace(plan.status, rollout=replace(rollout, progress_at=latest)))


def _retire_failed(plan: Plan) -> None:
    """Instances that can never serve leave; if one belongs to the new release, the rollout fails."""
    rollout = plan.status.rollout
    for instance in plan.instances:
        if not instance.live or instance.failure is None:
            continue
        plan.retire([instance], instance.failure)
        if (
            rollout is not None
            and rollout.active
            and instance.release == rollout.version
            and instance.release != plan.status.stable
        ):
            fail(plan, f"instance {instance.id} of {instance.release}: {instance.failure}")
            rollout = plan.status.rollout


def _check_progress_deadline(plan: Plan, spec: Spec) -> None:
    rollout = plan.status.rollout
    if rollout is None or rollout.phase is not RolloutPhase.PROGRESSING:
        return
    deadline = {
        "canary": spec.strategy.canary.progress_deadline if spec.strategy.canary else None,
        "blue_green": (
            spec.strategy.blue_green.progress_deadline if spec.strategy.blue_green else None
        ),
    }.get(rollout.strategy) or spec.rolling.progress_deadline
    if plan.now - max(rollout.progress_at, rollout.step_started_at) > deadline:
        not_ready = [i for i in plan.live(rollout.version) if not i.serving]
        detail = (
            f" ({len(not_ready)} instances of {rollout.version} not ready)" if not_ready else ""
        )
        fail(plan, f"no progress for {format_duration(deadline)} (progress_deadline){detail}")
