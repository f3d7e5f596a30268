"""Rolling convergence: move the live instances to `target`, never below capacity.

This one function serves the rolling strategy and the steady state (target = stable), which is
also how every failed or aborted rollout returns to the stable release.

Invariants (DESIGN.md, rules of the rollout):
- at most `instances + max_surge` live instances;
- at least `max(1, instances - max_unavailable)` available instances once there were that many;
- no ready instance of the old release leaves before one of the target has proven itself ready
  (unless max_surge is 0, which leaves no room to start one first);
- traffic goes to every serving instance until the target alone is at full size.
"""

from __future__ import annotations

from dataclasses import replace

from zerodown.core.hosts import floors, shares
from zerodown.core.model import Instance
from zerodown.core.plan import Plan, pool_of
from zerodown.core.routes import Pool, RouteTable
from zerodown.spec.model import RollingSpec
from zerodown.spec.types import resolve_count


def surge_and_unavailable(rolling: RollingSpec, instances: int) -> tuple[int, int]:
    surge = resolve_count(rolling.max_surge, instances, round_up=True)
    unavailable = resolve_count(rolling.max_unavailable, instances, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1  # Kubernetes refuses both at 0; one extra instance is the safe reading
    return surge, unavailable


def converge(
    plan: Plan,
    *,
    target: str,
    instances: int,
    rolling: RollingSpec,
    keep: frozenset[str] = frozenset(),
    hold_target: bool = False,
) -> RouteTable:
    """Launch and retire toward `instances` of `target`; `keep` releases are left alone.

    With `hold_target`, the target's instances start but neither get traffic nor replace old
    ones: checks that must pass before the release serves are still running."""
    now = plan.now
    surge, unavailable = surge_and_unavailable(rolling, instances)
    floor = max(1, instances - unavailable)

    live = [i for i in plan.live() if i.release not in keep]
    new = [i for i in live if i.release == target]
    old = [i for i in live if i.release != target]
    moved = _beyond_share(plan, new, instances)  # replaced like old ones, on the hosts short
    if moved:
        new = [i for i in new if i not in moved]
        old = [*old, *moved]

    extra = len(new) - instances
    if extra > 0:
        newest_first = sorted(new, key=lambda i: (i.serving, -i.launched_at))
        plan.retire(newest_first[:extra], f"more than {instances} instances of {target}")
        new = [i for i in new if i.id not in plan.retired]

    room = instances + surge - len(live) - plan.launching(target)
    missing = instances - len(new) - plan.launching(target)
    plan.launch(
        target,
        min(missing, room),
        f"{len(new)} of {instances} exist (max_surge {surge})",
    )

    plan.retire([i for i in old if not i.serving], f"not ready, and {target} replaces it")
    new_available = [] if hold_target else [i for i in new if i.available(now, rolling.min_ready)]
    old_serving = sorted((i for i in old if i.serving), key=lambda i: i.launched_at)
    can_go = len(new_available) + len(old_serving) - floor
    if not new_available and surge > 0:
        can_go = 0
    if can_go > 0 and old_serving:
        plan.retire(
            _per_host(plan, old_serving, new_available, instances, unavailable)[:can_go],
            f"{len(new_available)} of {instances} {target} instances available"
            f" (max_unavailable {unavailable})",
        )

    new_serving = [i for i in new if i.serving and i.id not in plan.retired and not hold_target]
    pools = [pool_of(target, len(new_serving), new_serving)] if new_serving else []
    if len(new_serving) < instances:  # old ones serve until the target alone is at full size
        by_release: dict[str, list[Instance]] = {}
        for i in old:
            if i.serving and i.id not in plan.retired:
                by_release.setdefault(i.release, []).append(i)
        pools += [pool_of(r, len(group), group) for r, group in by_release.items()]
    return RouteTable(generation=plan.status.routes.generation, pools=_one_per_release(pools))


def _beyond_share(plan: Plan, new: list[Instance], instances: int) -> list[Instance]:
    """Instances of the target on hosts above their share, while another answering host is
    below its own (one that answers again) or the target has more than `instances`: as many
    as that, newest first. They are replaced like old ones (on the hosts short, by `place`), so
    a move keeps max_unavailable too, and a surplus leaves from the hosts with too many."""
    if not plan.hosts:
        return []
    share = shares(instances, plan.hosts)
    on: dict[str, list[Instance]] = {name: [] for name in share}
    for i in new:
        name = plan.host_of(i)
        if name in on:
            on[name].append(i)
    short = sum(max(0, share[name] - len(group)) for name, group in on.items())
    short += max(0, len(new) - instances)
    beyond: list[Instance] = []
    for name, group in on.items():
        newest_first = sorted(group, key=lambda i: (i.serving, -i.launched_at))
        beyond += newest_first[: max(0, len(group) - share[name])]
    return beyond[:short]


def _one_per_release(pools: list[Pool]) -> tuple[Pool, ...]:
    """Instances of the target being moved serve in the target's pool, not a second one."""
    merged: dict[str, Pool] = {}
    for pool in pools:
        if pool.release in merged:
            first = merged[pool.release]
            pool = replace(
                first, weight=first.weight + pool.weight, backends=first.backends + pool.backends
            )
        merged[pool.release] = pool
    return tuple(merged.values())


def _per_host(
    plan: Plan,
    old_serving: list[Instance],
    new_available: list[Instance],
    instances: int,
    unavailable: int,
) -> list[Instance]:
    """The old instances that may leave, oldest first, keeping on every host that answers at
    least its share less max_unavailable (and one), as overall (core/hosts.py)."""
    if not plan.hosts:
        return old_serving
    floor = floors(instances, unavailable, plan.hosts)
    available: dict[str | None, int] = {}
    for i in [*old_serving, *new_available]:
        name = plan.host_of(i)
        available[name] = available.get(name, 0) + 1
    leaving = []
    for i in old_serving:
        name = plan.host_of(i)
        if name in floor and available[name] - 1 < floor[name]:
            continue  # its host would fall below its floor: a new instance there first
        available[name] -= 1
        leaving.append(i)
    return leaving


def is_complete(plan: Plan, *, target: str, instances: int, rolling: RollingSpec) -> bool:
    live = plan.live()
    available = [
        i for i in live if i.release == target and i.available(plan.now, rolling.min_ready)
    ]
    return len(available) >= instances and all(i.release == target for i in live)
