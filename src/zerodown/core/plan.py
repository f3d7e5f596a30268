"""A reconcile pass under construction: the strategies add launches, retirements and records,
and `decision()` orders them into actions the engine can carry out safely."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from zerodown.core.hosts import HostView, host_of, place
from zerodown.core.model import (
    Action,
    ApplyRoutes,
    Check,
    CheckState,
    Crashes,
    Decision,
    Instance,
    Launch,
    Record,
    Retire,
    RolloutPhase,
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
    hosts: Sequence[HostView] = ()  # with several hosts: each, and whether it answers
    total: int = 0  # the spec's instances: what each host's share is of

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

    def host_of(self, instance: Instance) -> str | None:
        return host_of(instance, self.hosts) if self.hosts else None

    def launching(self, release: str) -> int:
        return sum(launch.count for launch in self.launches if launch.release == release)

    # --- what strategies do ---------------------------------------------------------------

    def record(self, kind: str, message: str) -> None:
        revision = self.status.rollout.revision if self.status.rollout else None
        self.records.append(Record(kind=kind, message=message, revision=revision))

    def launch(self, release: str, count: int, why: str) -> None:
        if count <= 0 or self.crash_held(release):
            return
        placed: tuple[str, ...] = ()
        if self.hosts:
            planned: dict[str, int] = {}
            for earlier in self.launches:
                if earlier.release == release:
                    for name in earlier.hosts:
                        planned[name] = planned.get(name, 0) + 1
            placed = tuple(
                place(
                    release,
                    count,
                    total=self.total or count,
                    hosts=self.hosts,
                    live=self.live(),
                    planned=planned,
                )
            )
            if not placed:
                held = f"no host answers: {release} waits to launch {count}"
                if self.status.last_decision != held:  # once, not every pass
                    self.record("hold", held)
                return
        self.launches.append(Launch(release=release, count=count, hosts=placed))
        plural = "instance" if count == 1 else "instances"
        where = f" on {', '.join(placed)}" if placed else ""
        self.record("launch", f"launch {count} {plural} of {release}{where}: {why}")

    def crash_held(self, release: str) -> bool:
        """Its instances keep failing: wait out the backoff before starting another."""
        crashes = self.status.crashes.get(release)
        return crashes is not None and self.now < crashes.hold_until(self.total)

    def crashed(self, instance: Instance) -> None:
        """An instance failed for good: count it against its release's backoff."""
        before = self.status.crashes.get(instance.release)
        crashes = before.after(self.now) if before else Crashes(count=1, last_at=self.now)
        self.status = replace(
            self.status, crashes={**self.status.crashes, instance.release: crashes}
        )
        if crashes.hold_until(self.total) > self.now:
            wait = crashes.hold_until(self.total) - self.now
            self.record(
                "backoff",
                f"{instance.release} failed {crashes.count} times in a row: the next instance "
                f"starts in {wait:g}s",
            )

    def retire(self, instances: Iterable[Instance], why: str) -> None:
        for instance in instances:
            if instance.id not in self.retired:
                self.retired[instance.id] = why
                self.record("retire", f"retire {instance.id} ({instance.release}): {why}")

    def update(self, status: ServiceStatus) -> None:
        self.status = status

    # --- the rollout's life ---------------------------------------------------------------

    def fail(self, reason: str, *, phase: RolloutPhase = RolloutPhase.FAILED) -> None:
        """End the active rollout; traffic goes back to the stable release in this same pass."""
        rollout = self.status.rollout
        if rollout is None or not rollout.active:
            return
        ended = replace(rollout, phase=phase, reason=reason, finished_at=self.now, pause_reason="")
        self.update(replace(self.status, rollout=ended))
        back = f"; traffic stays on {self.status.stable}" if self.status.stable else ""
        self.record(phase.value, f"rollout of {rollout.version} {phase.value}: {reason}{back}")

    def complete(self, message: str) -> None:
        rollout = self.status.rollout
        assert rollout is not None
        checks = {
            key: replace(
                c, state=CheckState.PASSED, reason="ended with the rollout", finished_at=self.now
            )
            if c.state is CheckState.RUNNING
            else c
            for key, c in rollout.checks.items()
        }
        done = replace(
            rollout,
            phase=RolloutPhase.COMPLETED,
            finished_at=self.now,
            reason=message,
            pause_reason="",
            checks=checks,
        )
        self.update(replace(self.status, rollout=done, stable=rollout.version))
        self.record("complete", f"rollout of {rollout.version} complete: {message}")

    def pause(self, reason: str) -> None:
        rollout = self.status.rollout
        assert rollout is not None
        if rollout.phase is RolloutPhase.PAUSED and rollout.pause_reason == reason:
            return
        paused = replace(rollout, phase=RolloutPhase.PAUSED, pause_reason=reason)
        self.update(replace(self.status, rollout=paused))
        self.record("pause", reason)

    def note_progress(self) -> None:
        """Progress is a launch, a retirement, or an instance of the release becoming ready."""
        rollout = self.status.rollout
        assert rollout is not None
        ready_times = [i.ready_since for i in self.live(rollout.version) if i.ready_since]
        latest = max([rollout.progress_at, *ready_times])
        if self.launches or self.retired:
            latest = self.now
        if latest != rollout.progress_at:
            self.update(replace(self.status, rollout=replace(rollout, progress_at=latest)))

    # --- checks: the engine runs every check the status holds as running ------------------

    def check(self, key: str) -> Check | None:
        rollout = self.status.rollout
        return None if rollout is None else rollout.checks.get(key)

    def need(self, key: str, kind: str) -> Check | None:
        """The check's outcome so far, starting it (recording it as running) the first time."""
        current = self.check(key)
        rollout = self.status.rollout
        if current is None and rollout is not None:
            started = Check(kind=kind, started_at=self.now)
            self.update(replace(self.status, rollout=rollout.with_check(key, started)))
            self.record("check", f"{key}: started")
        return current

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
