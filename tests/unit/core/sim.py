"""A tiny world for the pure core, on a fake clock.

Each tick the world moves first (instances started `ready_after` seconds ago become ready, or fail
if their release is `broken`; running checks end with the outcome a test scripted in `outcomes`),
then one reconcile pass runs and its actions take effect at once: route tables are applied,
instances launched, retired ones gone. Operator commands go through `core.commands` exactly as the
controller sends them (`promote`, `abort`, `pause`, `resume`, `retry`, `rollback`, a new `deploy`).

After every pass the world checks the rules of the rollout (DESIGN.md) that one pass can break:

1. the router holds the table the status holds; it routes only to serving instances, never to one
   this pass retires, and gets that table before any instance leaves (DESIGN rules 1 and 2);
2. a service with a serving instance never goes dark, and the last ready instance of the stable
   release leaves only in a pass that hands all traffic to the rollout's release (rule 1);
3. while a canary or blue-green rollout is active, the stable release stays at full size;
4. a canary or blue-green rollout that ended aborted or failed has no traffic share, header route
   or preview, from the very pass that ended it (rule 3);
5. blue-green: the previous environment is not retired within `scale_down_delay` of the switch
   (rule 4);
6. a pass that changes the rollout's phase records why (rule 6);
7. a canary's weight rises only when it has the ready instances that weight needs (its
   `canary_scale`): the new release never takes more traffic than it has capacity for (rule 1).

A broken rule raises AssertionError from `tick`, naming the rule by its number here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from zerodown.core import commands
from zerodown.core.decide import decide
from zerodown.core.errors import StateError
from zerodown.core.model import (
    ApplyRoutes,
    CheckState,
    Decision,
    Instance,
    InstancePhase,
    Launch,
    Record,
    Retire,
    RolloutPhase,
    ServiceStatus,
)
from zerodown.core.routes import Match, RouteTable
from zerodown.spec.model import Spec

ENDED_BADLY = (RolloutPhase.ABORTED, RolloutPhase.FAILED)
PASSED, FAILED, INCONCLUSIVE = CheckState.PASSED, CheckState.FAILED, CheckState.INCONCLUSIVE
HEALTH_TEMPLATE = {
    "health": {"metrics": [{"name": "errors", "query": "error_rate", "count": 3, "interval": "1s"}]}
}
"""An analysis template for specs under test: its outcome is whatever `outcomes` scripts."""


@dataclass(repr=False)
class World:
    spec: Spec
    now: float = 1000.0
    status: ServiceStatus = field(default_factory=lambda: ServiceStatus(service="shop"))
    instances: dict[str, Instance] = field(default_factory=dict)
    ready_after: float = 1.0
    broken: set[str] = field(default_factory=set)  # releases that never become ready
    records: list[Record] = field(default_factory=list)
    tables: list[RouteTable] = field(default_factory=list)  # every table the router was given
    launched: list[tuple[float, str]] = field(default_factory=list)  # (when, release) per instance
    counter: int = 0
    revision: int = 0
    outcomes: dict[str, tuple[CheckState, str]] = field(default_factory=dict)
    started_checks: list[str] = field(default_factory=list)
    completed: dict[int, str] = field(default_factory=dict)  # revision -> version, in order
    superseded: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        rollout = self.status.rollout
        where = (
            ""
            if rollout is None
            else f", {rollout.version} {rollout.phase.value} step {rollout.step}"
        )
        return (
            f"World(t={self.now:g}, stable={self.status.stable}{where}, {sorted(self.instances)})"
        )

    # --- the operator, through core.commands as the controller calls it ---------------------

    def deploy(self, version: str, strategy: str | None = None, rollback: bool = False) -> None:
        current = self.status.rollout
        if current is not None and current.active:
            if current.version == version:
                return  # the controller attaches to the rollout already under way
            self.superseded.append(current.revision)
        self.revision += 1
        self.status = commands.start_rollout(
            self.status,
            revision=self.revision,
            version=version,
            # as the controller does: the first release simply starts at full size
            strategy=strategy
            or ("rolling" if self.status.stable is None else self.spec.strategy.name),
            now=self.now,
            rollback=rollback,
        )

    def promote(self, *, full: bool = False) -> None:
        canary = self.spec.strategy.canary
        steps = len(canary.steps) if canary is not None else 1
        self.status = commands.promote(self.status, full=full, steps=steps, now=self.now)

    def abort(self, who: str = "test") -> None:
        self.status = commands.abort(self.status, who=who, now=self.now)

    def pause(self, who: str = "test") -> None:
        self.status = commands.pause(self.status, who=who, now=self.now)

    def resume(self) -> None:
        self.status = commands.resume(self.status, now=self.now)

    def retry(self) -> None:
        self.status = commands.retry(self.status, now=self.now)

    def rollback(self) -> None:
        """As `zerodown rollback` without --to: abort an active rollout, else go back to the
        newest completed release that is not serving (blue-green by a switch, canary by rolling)."""
        rollout = self.status.rollout
        if rollout is not None and rollout.active:
            self.abort(who="test (rollback)")
            return
        earlier = [v for v in self.completed.values() if v != self.status.stable]
        if not earlier:
            raise StateError("there is no earlier completed revision to roll back to")
        strategy = "blue_green" if self.spec.strategy.name == "blue_green" else "rolling"
        self.deploy(earlier[-1], strategy=strategy, rollback=True)

    # --- the world's own events ---------------------------------------------------------------

    def fail_instance(self, instance_id: str, reason: str = "exited with 137") -> None:
        """The process died: the engine observes a failure it can never recover from."""
        self.instances[instance_id] = replace(
            self.instances[instance_id], ready=False, failure=reason
        )

    def unready(self, instance_id: str) -> None:
        """Its readiness probe fails (it may come back; it is not failed)."""
        self.instances[instance_id] = replace(
            self.instances[instance_id], ready=False, ready_since=None
        )

    def of(self, release: str) -> list[str]:
        return sorted(i.id for i in self.instances.values() if i.release == release)

    # --- time ---------------------------------------------------------------------------------

    def tick(self, dt: float = 0.5) -> Decision:
        self.now += dt
        for i in list(self.instances.values()):
            if i.phase is InstancePhase.STARTING and self.now - i.launched_at >= self.ready_after:
                if i.release in self.broken:
                    self.instances[i.id] = replace(i, failure="startup probe failed 3 times: 500")
                else:
                    self.instances[i.id] = replace(
                        i, phase=InstancePhase.RUNNING, ready=True, ready_since=self.now
                    )
        self.run_checks()
        return self.reconcile()

    def reconcile(self) -> Decision:
        """One pass at the current time, its actions carried out, the rules checked."""
        before, seen = self.status, dict(self.instances)
        decision = decide(self.spec, self.status, list(self.instances.values()), self.now)
        self.status = decision.status
        for action in decision.actions:
            if isinstance(action, Record):
                self.records.append(action)
            elif isinstance(action, ApplyRoutes):
                self.tables.append(action.table)
            elif isinstance(action, Retire):
                del self.instances[action.instance]
            elif isinstance(action, Launch):
                for _ in range(action.count):
                    self.counter += 1
                    iid = f"{action.release}-{self.counter}"
                    self.launched.append((self.now, action.release))
                    self.instances[iid] = Instance(
                        id=iid,
                        release=action.release,
                        address=f"127.0.0.1:{9000 + self.counter}",
                        launched_at=self.now,
                    )
        rollout = self.status.rollout
        if rollout is not None and rollout.phase is RolloutPhase.COMPLETED:
            self.completed.setdefault(rollout.revision, rollout.version)
        self.check_rules(before, seen, decision)
        return decision

    def run_checks(self) -> None:
        """The engine's part: a running check with a scripted outcome ends with it."""
        rollout = self.status.rollout
        if rollout is None:
            return
        for key, check in rollout.checks.items():
            if key not in self.started_checks:
                self.started_checks.append(key)
            if check.state is CheckState.RUNNING and key in self.outcomes:
                state, reason = self.outcomes[key]
                detail = {"started": True} if key == "migrate" else {}
                done = replace(check, state=state, reason=reason, detail=detail)
                rollout = rollout.with_check(key, done)
        self.status = replace(self.status, rollout=rollout)

    def run(self, seconds: float, dt: float = 0.5) -> None:
        for _ in range(int(seconds / dt)):
            self.tick(dt)

    def run_until(self, done: Callable[[], bool], seconds: float = 60, dt: float = 0.5) -> None:
        """Tick until `done()` holds; fail after `seconds` of simulated time."""
        for _ in range(int(seconds / dt)):
            if done():
                return
            self.tick(dt)
        assert done(), f"not reached within {seconds}s of simulated time"

    # --- what the router does with the applied table ------------------------------------------

    @property
    def applied(self) -> RouteTable:
        return self.tables[-1] if self.tables else RouteTable(generation=0)

    def weights(self) -> dict[str, int]:
        return {p.release: p.weight for p in self.applied.pools if p.backends}

    def shares(self) -> dict[str, float]:
        """Percent of unmatched traffic per release, as the built-in router splits it: pools with a
        weight and a backend, or, when none has both, every pool with a backend equally."""
        return traffic_shares(self.applied)

    def header_routes(self) -> tuple[Match, ...]:
        return self.applied.matches

    def serving(self, release: str | None = None) -> int:
        return sum(
            1
            for i in self.instances.values()
            if i.serving and (release is None or i.release == release)
        )

    @property
    def phase(self) -> RolloutPhase | None:
        return None if self.status.rollout is None else self.status.rollout.phase

    # --- the rules ----------------------------------------------------------------------------

    def check_rules(
        self, before: ServiceStatus, seen: dict[str, Instance], decision: Decision
    ) -> None:
        after, table = self.status, self.applied
        retired = [a.instance for a in decision.actions if isinstance(a, Retire)]
        _traffic_leaves_first(decision.actions, after, table, seen, retired)
        _never_dark(before, after, table, seen, retired)
        _stable_stays_whole(self.spec, before, after, seen, retired)
        _ended_rollout_gets_nothing(after, table)
        self._kept_warm(after, retired, seen)
        _phase_changes_recorded(before, after, decision.actions)
        self._canary_weight_backed(before, after)

    def _kept_warm(
        self, after: ServiceStatus, retired: list[str], seen: dict[str, Instance]
    ) -> None:
        rollout, bg = after.rollout, self.spec.strategy.blue_green
        if (
            bg is None
            or rollout is None
            or rollout.strategy != "blue_green"
            or rollout.phase is not RolloutPhase.COMPLETED
            or rollout.switched_at is None
            or rollout.previous in (None, after.stable)
            or self.now - rollout.switched_at >= bg.scale_down_delay
        ):
            return
        gone = [
            i for i in retired if seen[i].release == rollout.previous and seen[i].failure is None
        ]
        assert not gone, (
            f"rule 5: {gone} of {rollout.previous} retired "
            f"{self.now - rollout.switched_at:g}s after the switch"
        )

    def _canary_weight_backed(self, before: ServiceStatus, after: ServiceStatus) -> None:
        rollout, canary = after.rollout, self.spec.strategy.canary
        if canary is None or rollout is None or rollout.strategy != "canary":
            return
        old, new = (
            _weight_of(before.routes, rollout.version),
            _weight_of(after.routes, rollout.version),
        )
        if new <= old:
            return
        n = self.spec.instances
        if canary.canary_scale == "match_weight":
            needed = max(1, math.ceil(n * new / 100))
        else:
            needed = n if new >= 100 else min(n, canary.canary_scale)
        backends = next(p.backends for p in after.routes.pools if p.release == rollout.version)
        assert len(backends) >= needed, (
            f"rule 7: {rollout.version} raised from {old}% to {new}% with {len(backends)} ready "
            f"instances of the {needed} that weight needs"
        )


def _weight_of(table: RouteTable, release: str) -> int:
    """The weight of the release's pool, when it has a backend to take it."""
    return next((p.weight for p in table.pools if p.release == release and p.backends), 0)


def traffic_shares(table: RouteTable) -> dict[str, float]:
    eligible = {p.release: p.weight for p in table.pools if p.weight > 0 and p.backends}
    if not eligible:
        eligible = {p.release: 1 for p in table.pools if p.backends}
    total = sum(eligible.values())
    return {release: 100 * w / total for release, w in eligible.items()}


def _traffic_leaves_first(
    actions: Sequence[object],
    after: ServiceStatus,
    table: RouteTable,
    seen: dict[str, Instance],
    retired: list[str],
) -> None:
    assert table == after.routes, "rule 1: the router's table is not the one the status holds"
    routed = table.addresses()
    for i in seen.values():
        if i.address in routed:
            assert i.serving, f"rule 1: {i.id} is routed but not serving"
            assert i.id not in retired, f"rule 1: {i.id} retired while still routed"
    if retired:
        first_retire = next(n for n, a in enumerate(actions) if isinstance(a, Retire))
        assert any(isinstance(a, ApplyRoutes) for a in actions[:first_retire]), (
            "rule 1: an instance retired before the table without it was applied"
        )


def _never_dark(
    before: ServiceStatus,
    after: ServiceStatus,
    table: RouteTable,
    seen: dict[str, Instance],
    retired: list[str],
) -> None:
    if after.stopping or after.stable is None:
        return
    if any(i.serving for i in seen.values()):
        assert table.addresses(), "rule 2: every ready instance left the route table"
    stable = before.stable
    stable_ready = [i.id for i in seen.values() if i.serving and i.release == stable]
    if not stable_ready or not set(stable_ready) <= set(retired):
        return
    rollout = after.rollout
    assert rollout is not None and rollout.phase in (
        RolloutPhase.PROGRESSING,
        RolloutPhase.PAUSED,
        RolloutPhase.COMPLETED,
    ), f"rule 2: the last ready instance of {stable} retired, and the rollout ended"
    releases = {p.release for p in table.pools if p.backends}
    assert releases == {rollout.version}, (
        f"rule 2: the last ready instance of {stable} retired while {releases} serve"
    )


def _stable_stays_whole(
    spec: Spec,
    before: ServiceStatus,
    after: ServiceStatus,
    seen: dict[str, Instance],
    retired: list[str],
) -> None:
    rollout = after.rollout
    if rollout is None or not rollout.active or rollout.strategy not in ("canary", "blue_green"):
        return
    if after.stable is None or after.stable != before.stable:
        return
    ready = [i.id for i in seen.values() if i.serving and i.release == after.stable]
    kept = [i for i in ready if i not in retired]
    assert len(kept) >= min(spec.instances, len(ready)), (
        f"rule 3: {after.stable} shrank from {len(ready)} to {len(kept)} ready instances "
        f"during the {rollout.strategy} rollout of {rollout.version}"
    )


def _ended_rollout_gets_nothing(after: ServiceStatus, table: RouteTable) -> None:
    rollout = after.rollout
    if (
        rollout is None
        or rollout.phase not in ENDED_BADLY
        or rollout.strategy not in ("canary", "blue_green")
        or rollout.version == after.stable
    ):
        return
    version = rollout.version
    share = traffic_shares(table).get(version, 0)
    assert share == 0, f"rule 4: {version} still gets {share:g}% after {rollout.phase.value}"
    assert all(m.release != version for m in table.matches), (
        f"rule 4: a header route still sends to {version} after {rollout.phase.value}"
    )
    assert table.preview != version, f"rule 4: {version} still on the preview listener"


def _phase_changes_recorded(
    before: ServiceStatus, after: ServiceStatus, actions: Sequence[object]
) -> None:
    old, new = before.rollout, after.rollout
    if old is None or new is None or old.revision != new.revision or old.phase is new.phase:
        return
    assert any(isinstance(a, Record) for a in actions), (
        f"rule 6: {old.phase.value} -> {new.phase.value} without a record of why"
    )
