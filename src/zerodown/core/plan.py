"""A reconcile pass under construction: the strategies add launches, retirements and records,
and `decision()` orders them into actions the engine can carry out safely."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from zerodown.core.model import (
    Action,
    ApplyRoutes,
    Decision,
    Instance,
    Launch,
    Record,
    Retire,
    ServiceStatus,
)
from zerodown.core.routes import Backend, Pool, RouteTable


@dataclass
class Plan:
    status: ServiceStatus
    instances: Sequence[Instance]
    now: float
    records: list[Record] = field(default_factory=list)
    launches: list[Launch] = field(default_factory=list)
    retired: dict[str, str] = field(default_factory=dict)  # instance id -> reason

    # --- what strategies read -------------------------------------------------------------

    def live(self, release: str | None = None) -> list[Instance]:
        """Instances that are, or may become, serving: not retiring, not failed."""
        return [
            i
            for i in self.instances
            if i.live
            and i.failure is None
            and i.id not in self.retired
            and (release is None or i.release == release)
        ]

    def launching(self, release: str) -> int:
        return sum(launch.count for launch in self.launches if launch.release == release)

    # --- what strategies do ---------------------------------------------------------------

    def record(self, kind: str, message: str) -> None:
        revision = self.status.rollout.revision if self.status.rollout else None
        self.records.append(Record(kind=kind, message=message, revision=revision))

    def launch(self, release: str, count: int, why: str) -> None:
        if count <= 0:
            return
        revision = self.status.rollout.revision if self.status.rollout else 0
        self.launches.append(Launch(release=release, count=count, revision=revision))
        plural = "instance" if count == 1 else "instances"
        self.record("launch", f"launch {count} {plural} of {release}: {why}")

    def retire(self, instances: Iterable[Instance], why: str) -> None:
        for instance in instances:
            if instance.id not in self.retired:
                self.retired[instance.id] = why
                self.record("retire", f"retire {instance.id} ({instance.release}): {why}")

    def update(self, status: ServiceStatus) -> None:
        self.status = status

    # --- the result -----------------------------------------------------------------------

    def decision(self, table: RouteTable) -> Decision:
        status = self.status
        if not table.same_routing(status.routes):
            table = replace(table, generation=status.routes.generation + 1)
        else:
            table = status.routes
        if self.records:
            status = status.with_decision(self.records[-1].message, self.now)
        status = replace(status, routes=table)
        actions: list[Action] = [*self.records]
        if table != self.status.routes or self.retired:
            # Re-applied whenever something leaves, so a retiring instance is out of the router's
            # table before it drains, even if an earlier apply was lost in a crash.
            actions.append(ApplyRoutes(table))
        actions += [Retire(instance=i, reason=why) for i, why in self.retired.items()]
        actions += self.launches
        return Decision(status=status, actions=tuple(actions))


def pool_of(release: str, weight: int, instances: Sequence[Instance]) -> Pool:
    serving = sorted((i for i in instances if i.serving), key=lambda i: i.id)
    backends = tuple(Backend(address=i.address, instance=i.id) for i in serving)
    return Pool(release=release, weight=weight, backends=backends)
