"""A tiny world for the pure core: decisions are carried out instantly, instances become ready
after `ready_after` seconds, and invariants are checked on every tick."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from zerodown.core.commands import start_rollout
from zerodown.core.decide import decide
from zerodown.core.model import (
    ApplyRoutes,
    CheckState,
    Instance,
    InstancePhase,
    Launch,
    Record,
    Retire,
    ServiceStatus,
)
from zerodown.spec.model import Spec


@dataclass
class World:
    spec: Spec
    now: float = 1000.0
    status: ServiceStatus = field(default_factory=lambda: ServiceStatus(service="shop"))
    instances: dict[str, Instance] = field(default_factory=dict)
    ready_after: float = 1.0
    broken: set[str] = field(default_factory=set)  # releases that never become ready
    records: list[Record] = field(default_factory=list)
    tables: list = field(default_factory=list)
    counter: int = 0
    revision: int = 0
    outcomes: dict[str, tuple[CheckState, str]] = field(default_factory=dict)
    started_checks: list[str] = field(default_factory=list)

    def deploy(self, version: str, strategy: str | None = None, rollback: bool = False) -> None:
        self.revision += 1
        self.status = start_rollout(
            self.status,
            revision=self.revision,
            version=version,
            # as the controller does: the first release simply starts at full size
            strategy=strategy
            or ("rolling" if self.status.stable is None else self.spec.strategy.name),
            now=self.now,
            rollback=rollback,
        )

    def tick(self, dt: float = 0.5) -> None:
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
                    self.instances[iid] = Instance(
                        id=iid,
                        release=action.release,
                        address=f"127.0.0.1:{9000 + self.counter}",
                        launched_at=self.now,
                    )
        self.check()

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

    def weights(self) -> dict[str, int]:
        return {p.release: p.weight for p in self.status.routes.pools if p.backends}

    def check(self) -> None:
        routed = self.status.routes.addresses()
        for i in self.instances.values():
            if i.address in routed:
                assert i.serving, f"{i.id} is routed but not serving"

    def run(self, seconds: float, dt: float = 0.5) -> None:
        for _ in range(int(seconds / dt)):
            self.tick(dt)

    def serving(self, release: str | None = None) -> int:
        return sum(
            1
            for i in self.instances.values()
            if i.serving and (release is None or i.release == release)
        )
