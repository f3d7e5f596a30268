"""decide(spec, status, instances, now) -> Decision: the whole brain of a reconcile pass.

Pure: it reads what the engine observed and returns the new status and the actions as data. The
engine persists the status (with every Record) before it carries out any action, so a controller
killed at any point and restarted decides again from the same facts and reaches the same actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from zerodown.core import bluegreen, canary, checks, rolling
from zerodown.core.hosts import HostView, lost
from zerodown.core.model import Decision, Instance, RolloutPhase, ServiceStatus
from zerodown.core.plan import Plan
from zerodown.core.routes import RouteTable
from zerodown.spec.model import Spec
from zerodown.spec.types import format_duration


def decide(
    spec: Spec,
    status: ServiceStatus,
    instances: Sequence[Instance],
    now: float,
    hosts: Sequence[HostView] = (),
) -> Decision:
    """`hosts`: with several hosts, each and whether it answers (the engine asks the platform)."""
    instances = _unready_on_down_hosts(instances, hosts)
    plan = Plan(status=status, instances=instances, now=now, hosts=hosts, total=spec.instances)
    if status.stopping:
        plan.retire([i for i in instances if i.live], "zerodown down")
        return plan.decision(RouteTable(generation=status.routes.generation))

    _retire_on_lost_hosts(plan, spec)
    _retire_failed(plan)
    _check_progress_deadline(plan, spec)
    rollout = plan.status.rollout
    if rollout is not None and rollout.active and checks.prepared(plan, spec):
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
    rollout = plan.status.rollout
    if rollout is not None and not rollout.active:
        checks.clean_up(plan)
        checks.contract_when_quiet(plan, spec)
    stable = plan.status.stable
    if stable is None:
        plan.retire(plan.live(), "no release has ever completed a rollout")
        return RouteTable(generation=plan.status.routes.generation)
    if (
        rollout is not None
        and rollout.phase in (RolloutPhase.ABORTED, RolloutPhase.FAILED)
        and rollout.strategy in ("canary", "blue_green")
        and rollout.version != stable
        and any(i.serving for i in plan.live(stable))
    ):
        # Rule 3: an aborted release takes no traffic, even while the stable one is short.
        plan.retire(plan.live(rollout.version), f"{rollout.phase.value}: no traffic after it")
    keep = bluegreen.kept_warm(plan, spec)
    if rollout is not None and rollout.active:
        keep |= {rollout.version}  # still preparing (gate, migration): nothing of it to touch
    return rolling.converge(
        plan, target=stable, instances=spec.instances, rolling=spec.rolling, keep=keep
    )


def _rolling(plan: Plan, spec: Spec) -> RouteTable:
    rollout = plan.status.rollout
    assert rollout is not None
    cleared = checks.cleared_for_traffic(plan, spec)
    table = rolling.converge(
        plan,
        target=rollout.version,
        instances=spec.instances,
        rolling=spec.rolling,
        hold_target=not cleared,
    )
    if (
        cleared
        and rolling.is_complete(
            plan, target=rollout.version, instances=spec.instances, rolling=spec.rolling
        )
        and checks.promoted(plan, spec)
    ):
        plan.complete(f"{spec.instances} of {spec.instances} instances available")
    elif plan.status.rollout is not None and plan.status.rollout.active:
        plan.note_progress()
    return table


def _unready_on_down_hosts(
    instances: Sequence[Instance], hosts: Sequence[HostView]
) -> Sequence[Instance]:
    """An instance on a host that does not answer gets no traffic from this pass on, without
    waiting for its readiness probe to notice."""
    down = {h.address for h in hosts if not h.up}
    if not down:
        return instances
    return [
        replace(i, ready=False, ready_since=None)
        if i.address.rpartition(":")[0].strip("[]") in down and i.ready
        else i
        for i in instances
    ]


def _retire_on_lost_hosts(plan: Plan, spec: Spec) -> None:
    """A host that has not answered for ssh.host_grace: its instances are replaced on the
    others (they leave the routes and the count now; they are stopped when it answers again).
    An instance that failed while its host was down failed with its host, not by itself."""
    down = {h.name: h for h in plan.hosts if not h.up}
    gone = {h.name for h in lost(plan.hosts, plan.now, spec.ssh.host_grace)}
    for instance in plan.instances:
        name = plan.host_of(instance)
        if not instance.live or name not in down:
            continue
        host = down[name]
        if name in gone or instance.failure is not None:
            since = round(plan.now - (host.down_since or plan.now), 1)
            plan.retire(
                [instance],
                f"host {name} has not answered for {format_duration(since)}"
                f" ({host.reason or 'no answer'}): replaced on the other hosts",
            )


def _retire_failed(plan: Plan) -> None:
    """Instances that can never serve leave; if one is of the new release, the rollout fails."""
    for instance in plan.instances:
        if not instance.live or instance.failure is None or instance.id in plan.retired:
            continue
        plan.crashed(instance)
        plan.retire([instance], instance.failure)
        rollout = plan.status.rollout
        if (
            rollout is not None
            and rollout.active
            and instance.release == rollout.version
            and instance.release != plan.status.stable
        ):
            plan.fail(f"instance {instance.id} of {instance.release}: {instance.failure}")


def _waiting_as_told(plan: Plan, spec: Spec) -> bool:
    """A timed canary pause, or a ready green environment waiting for auto_promote_after: the
    wait was asked for, so it is not a lack of progress."""
    rollout = plan.status.rollout
    assert rollout is not None
    canary_spec, bg = spec.strategy.canary, spec.strategy.blue_green
    if rollout.strategy == "canary" and canary_spec is not None:
        return rollout.step < len(canary_spec.steps) and (
            canary_spec.steps[rollout.step].pause is not None
        )
    if rollout.strategy == "blue_green" and bg is not None and bg.auto_promote_after is not None:
        ready = [i for i in plan.live(rollout.version) if i.serving]
        return rollout.switched_at is None and len(ready) >= spec.instances
    return False


def _check_progress_deadline(plan: Plan, spec: Spec) -> None:
    rollout = plan.status.rollout
    if rollout is None or rollout.phase is not RolloutPhase.PROGRESSING:
        return
    if any(
        c.kind in ("gate", "migrate", "analysis") and not c.done for c in rollout.checks.values()
    ):
        return  # these have their own time limits
    if _waiting_as_told(plan, spec):
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
        plan.fail(f"no progress for {format_duration(deadline)} (progress_deadline){detail}")
