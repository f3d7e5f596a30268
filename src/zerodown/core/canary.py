"""Canary: the new release takes a growing share of traffic, step by step, while the stable
release stays at full size until the end.

The weight and header routes in force are derived from the steps already passed, so the only
state a canary keeps is its step index and when that step started.
"""

from __future__ import annotations

import math
from dataclasses import replace

from zerodown.core import caution, checks
from zerodown.core.bluegreen import steady_blue
from zerodown.core.model import CheckState, RolloutPhase
from zerodown.core.plan import Plan, pool_of
from zerodown.core.routes import Match, RouteTable, Sticky
from zerodown.spec.model import CanarySpec, CanaryStep, Spec
from zerodown.spec.types import format_duration


def weight_before(steps: list[CanaryStep], step: int) -> int:
    weights = [s.set_weight for s in steps[:step] if s.set_weight is not None]
    return weights[-1] if weights else 0


def matches_before(steps: list[CanaryStep], step: int, release: str) -> tuple[Match, ...]:
    routes = [s.set_header_route for s in steps[:step] if s.set_header_route is not None]
    return tuple(
        Match(release=release, value=r.value, header=r.header, cookie=r.cookie) for r in routes
    )


def instances_for(canary: CanarySpec, weight: int, total: int) -> int:
    if weight <= 0:
        return 0
    if canary.canary_scale == "match_weight":
        return max(1, math.ceil(total * weight / 100))
    return min(total, int(canary.canary_scale)) if weight < 100 else total


def reconcile(plan: Plan, spec: Spec) -> RouteTable:
    canary = spec.strategy.canary
    rollout = plan.status.rollout
    assert canary is not None and rollout is not None
    version, stable, n = rollout.version, plan.status.stable, spec.instances

    stable_table = (
        steady_blue(plan, spec, blue=stable, green=version) if stable is not None else None
    )
    _advance(plan, spec, n)
    checks.background_analysis(plan, spec)
    rollout = plan.status.rollout
    assert rollout is not None
    if not rollout.active:  # aborted by an analysis or a check: decide turns to the steady state
        return RouteTable(generation=plan.status.routes.generation)

    step = rollout.step
    weight = weight_before(canary.steps, step)
    upcoming = canary.steps[step] if step < len(canary.steps) else None
    wanted = instances_for(canary, max(weight, _upcoming_weight(upcoming)), n)
    routed = (*canary.steps[:step], *([upcoming] if upcoming is not None else []))
    if any(s.set_header_route is not None for s in routed):
        wanted = max(wanted, 1)  # a header route needs a canary to route to, even at weight 0
    if stable is None:
        wanted = n  # nothing else can serve: the first release runs at full size
    live = plan.live(version)
    plan.launch(
        version, wanted - len(live) - plan.launching(version), f"weight {weight}% needs {wanted}"
    )

    if step >= len(canary.steps) and rollout.active:
        if sum(1 for i in live if i.serving) < n:
            plan.launch(version, n - len(live) - plan.launching(version), "promoted to full size")
        elif checks.promoted(plan, spec):
            plan.complete(f"all {len(canary.steps)} steps passed")
    if plan.status.rollout is not None and plan.status.rollout.active:
        plan.note_progress()

    serving = [i for i in live if i.serving]
    if instances_for(canary, weight, n) > len(serving):
        weight = min(weight, 100 * len(serving) // n)  # promoted past set_weight: capacity first
    canary_pool = pool_of(version, weight if stable_table else 100, serving)
    stable_pools = tuple(
        replace(p, weight=100 - weight) for p in (stable_table.pools if stable_table else ())
    )
    sticky = None
    if canary.sticky is not None:
        sticky = Sticky(cookie=canary.sticky.cookie, header=canary.sticky.header)
    return RouteTable(
        generation=plan.status.routes.generation,
        pools=(canary_pool, *stable_pools),
        matches=matches_before(canary.steps, step, version),
        sticky=sticky,
    )


def _upcoming_weight(step: CanaryStep | None) -> int:
    return step.set_weight if step is not None and step.set_weight is not None else 0


def _advance(plan: Plan, spec: Spec, n: int) -> None:
    """Pass every step that is done, in order; stop at the first that is not."""
    canary = spec.strategy.canary
    assert canary is not None
    while True:
        rollout = plan.status.rollout
        assert rollout is not None
        if rollout.phase is RolloutPhase.PAUSED and rollout.step < len(canary.steps):
            key = f"analysis:step-{rollout.step + 1}"
            check = plan.check(key)
            if check is not None and check.state is CheckState.FAILED:
                checks.analysis(plan, key)  # aborts: a pause holds promotion, not a bad canary
        if rollout.phase is not RolloutPhase.PROGRESSING or rollout.step >= len(canary.steps):
            return
        step = canary.steps[rollout.step]
        waiting = _waiting_on(plan, spec, rollout.step, n)
        if waiting is None:
            moved = replace(rollout, step=rollout.step + 1, step_started_at=plan.now)
            plan.update(replace(plan.status, rollout=moved))
            what = describe(step)
            if step.pause is not None and step.pause.duration:
                what = caution.describe_pause(spec, rollout, step.pause.duration)
            plan.record("step", f"step {rollout.step + 1}/{len(canary.steps)} done: {what}")
            continue
        if waiting:
            plan.pause(f"step {rollout.step + 1}/{len(canary.steps)}: {waiting}")
        return


def _waiting_on(plan: Plan, spec: Spec, index: int, n: int) -> str | None:
    """None when the step is done; "" to keep waiting; a reason to pause for a person."""
    canary = spec.strategy.canary
    rollout = plan.status.rollout
    assert rollout is not None and canary is not None
    step = canary.steps[index]
    if step.set_weight is not None:
        wanted = instances_for(canary, step.set_weight, n)
        ready = sum(1 for i in plan.live(rollout.version) if i.serving)
        if ready < wanted or not checks.cleared_for_traffic(plan, spec):
            return ""
        if caution.analysis_after(spec, rollout, step):  # irreversible migration: check again
            return None if checks.analysis(plan, caution.analysis_key(index)) else ""
        return None
    if step.pause is not None:
        if step.pause.duration is None:
            return "paused until `zerodown promote`"
        pause = caution.pause_seconds(spec, rollout, step.pause.duration)
        return None if plan.now - rollout.step_started_at >= pause else ""
    if step.analysis is not None:
        return None if checks.analysis(plan, f"analysis:step-{index + 1}") else ""
    if step.set_flag is not None:
        check = plan.need(f"flag:step-{index + 1}", "set-flag")
        if check is None or check.state is CheckState.RUNNING:
            return ""
        if check.state is not CheckState.PASSED:
            plan.fail(f"set_flag {step.set_flag.key}: {check.reason}")
            return ""
        return None
    if step.set_header_route is not None:
        serving = any(i.serving for i in plan.live(rollout.version))
        return None if serving and checks.cleared_for_traffic(plan, spec) else ""
    return None


def describe(step: CanaryStep) -> str:
    if step.set_weight is not None:
        return f"weight {step.set_weight}%"
    if step.pause is not None:
        return "pause" + (f" {format_duration(step.pause.duration)}" if step.pause.duration else "")
    if step.set_header_route is not None:
        r = step.set_header_route
        key = f"header {r.header}" if r.header else f"cookie {r.cookie}"
        return f"route {key}={r.value} to the canary"
    if step.set_flag is not None:
        f = step.set_flag
        what = f"rollout {f.rollout}" if f.rollout is not None else f"enabled {f.enabled}"
        return f"flag {f.key}: {what}"
    templates = ", ".join(step.analysis.templates) if step.analysis else ""
    return f"analysis {templates}"
