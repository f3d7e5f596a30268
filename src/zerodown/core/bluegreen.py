"""Blue-green: the new release starts at full size beside the old one, is reachable on the
preview listener, and takes all traffic in one route change once every instance is ready.

The previous release stays warm for `scale_down_delay` after the switch, so a rollback in that
window is one route change back, with no instance launched.

Rollout steps: 0 = preparing the new environment, 1 = switch approved (by `auto_promote`,
`auto_promote_after`, a rollback, or `zerodown promote`).
"""

from __future__ import annotations

from dataclasses import replace

from zerodown.core import checks
from zerodown.core.model import Instance, Rollout, RolloutPhase
from zerodown.core.plan import Plan, pool_of
from zerodown.core.rolling import converge
from zerodown.core.routes import RouteTable
from zerodown.spec.model import BlueGreenSpec, Spec


def reconcile(plan: Plan, spec: Spec) -> RouteTable:
    bg = spec.strategy.blue_green
    rollout = plan.status.rollout
    assert bg is not None and rollout is not None
    green, blue = rollout.version, plan.status.stable
    n = spec.instances

    blue_table = (
        steady_blue(plan, spec, blue=blue, green=green) if blue is not None else RouteTable(0)
    )
    existing = plan.live(green)
    plan.launch(green, n - len(existing) - plan.launching(green), f"new environment needs {n}")
    ready = [i for i in existing if i.serving]

    if rollout.switched_at is not None:
        return _after_switch(plan, spec, green, ready)
    if len(ready) < n or not checks.cleared_for_traffic(plan, spec, all_ready=True):
        plan.note_progress()
        return _with_preview(blue_table, plan, green)
    pre = bg.pre_promotion_analysis
    if pre is not None and not rollout.rollback and not checks.analysis(plan, "analysis:pre"):
        return _with_preview(blue_table, plan, green)
    rollout = _approved(plan, bg, ready)
    if rollout.step == 0:
        return _with_preview(blue_table, plan, green)
    switched = replace(rollout, switched_at=plan.now, phase=RolloutPhase.PROGRESSING)
    plan.update(replace(plan.status, rollout=switched))
    plan.record("switch", f"all traffic from {blue or 'nothing'} to {green} in one route change")
    return _after_switch(plan, spec, green, ready)


def _approved(plan: Plan, bg: BlueGreenSpec, ready: list[Instance]) -> Rollout:
    """Step 1 once the switch is approved; otherwise paused for `zerodown promote`. A person's
    pause holds the switch, even when it would be automatic."""
    rollout = plan.status.rollout
    assert rollout is not None
    if (
        rollout.step == 0
        and rollout.phase is RolloutPhase.PROGRESSING
        and _may_switch(plan, bg, ready)
    ):
        rollout = replace(rollout, step=1)
        plan.update(replace(plan.status, rollout=rollout))
    elif (
        rollout.step == 0
        and rollout.phase is RolloutPhase.PROGRESSING
        and bg.auto_promote_after is None
    ):
        where = f" on {bg.preview_listen}" if bg.preview_listen else ""
        plan.pause(f"{rollout.version} is ready{where}; run `zerodown promote` to switch")
    return plan.status.rollout or rollout


def _after_switch(plan: Plan, spec: Spec, green: str, ready: list[Instance]) -> RouteTable:
    """Traffic is on green; blue stays warm until post-promotion checks pass."""
    bg = spec.strategy.blue_green
    rollout = plan.status.rollout
    assert bg is not None and rollout is not None
    post_ok = (
        bg.post_promotion_analysis is None
        or rollout.rollback
        or checks.analysis(plan, "analysis:post")
    )
    if post_ok and checks.promoted(plan, spec):
        blue = rollout.previous or "nothing"
        plan.complete(f"all traffic switched from {blue} to {green} in one route change")
    return RouteTable(
        generation=plan.status.routes.generation, pools=(pool_of(green, spec.instances, ready),)
    )


def _may_switch(plan: Plan, bg: BlueGreenSpec, ready: list[Instance]) -> bool:
    rollout = plan.status.rollout
    assert rollout is not None
    if rollout.rollback or (bg.auto_promote and bg.auto_promote_after is None):
        return True
    if bg.auto_promote_after is not None:
        # counted from when the whole green environment became ready: a preview window each time
        all_ready_at = max(i.ready_since or plan.now for i in ready)
        return plan.now - all_ready_at >= bg.auto_promote_after
    return False


def steady_blue(plan: Plan, spec: Spec, *, blue: str, green: str) -> RouteTable:
    return converge(
        plan,
        target=blue,
        instances=spec.instances,
        rolling=spec.rolling,
        keep=frozenset({green}),
    )


def _with_preview(table: RouteTable, plan: Plan, green: str) -> RouteTable:
    pool = pool_of(green, 0, plan.live(green))
    return replace(table, pools=(*table.pools, pool), preview=green)


def kept_warm(plan: Plan, spec: Spec) -> frozenset[str]:
    """The previous release of a finished blue-green switch, until scale_down_delay has passed."""
    rollout = plan.status.rollout
    bg = spec.strategy.blue_green
    if (
        rollout is None
        or rollout.strategy != "blue_green"
        or rollout.phase is not RolloutPhase.COMPLETED
        or rollout.switched_at is None
        or rollout.previous is None
        or rollout.previous == plan.status.stable
    ):
        return frozenset()
    delay = bg.scale_down_delay if bg is not None else 30.0
    if plan.now - rollout.switched_at < delay:
        return frozenset({rollout.previous})
    return frozenset()
