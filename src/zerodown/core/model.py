"""What the controller knows, as plain frozen data: instances, rollouts, the service's status,
revisions and the decision log.

The store persists these; `decide` reads them and returns new ones. Nothing here does I/O, and
nothing here knows which platform runs an instance: an instance carries the platform's opaque
`handle`, never a pid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from zerodown.core.routes import RouteTable


class InstancePhase(StrEnum):
    STARTING = "starting"  # launched; its startup probe has not passed yet
    RUNNING = "running"  # started; readiness decides whether it gets traffic
    RETIRING = "retiring"  # out of the route table: draining, then stopping
    STOPPED = "stopped"  # gone


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    release: str  # the version it runs
    address: str  # host:port it listens on
    launched_at: float
    phase: InstancePhase = InstancePhase.STARTING
    ready: bool = False
    ready_since: float | None = None
    failure: str | None = None  # why it can never serve: startup or liveness failed, exited
    retire_reason: str | None = None
    handle: str | None = None  # the platform's, once it launched (or adopted) the instance

    @property
    def live(self) -> bool:
        return self.phase in (InstancePhase.STARTING, InstancePhase.RUNNING)

    @property
    def serving(self) -> bool:
        """May be in the route table: running, ready, not failed."""
        return self.phase is InstancePhase.RUNNING and self.ready and self.failure is None

    def available(self, now: float, min_ready: float) -> bool:
        return self.serving and self.ready_since is not None and now - self.ready_since >= min_ready

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "release": self.release,
            "address": self.address,
            "launched_at": self.launched_at,
            "phase": self.phase.value,
            "ready": self.ready,
            "ready_since": self.ready_since,
            "failure": self.failure,
            "retire_reason": self.retire_reason,
            "handle": self.handle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return cls(
            id=data["id"],
            release=data["release"],
            address=data["address"],
            launched_at=float(data["launched_at"]),
            phase=InstancePhase(data.get("phase", "starting")),
            ready=bool(data.get("ready", False)),
            ready_since=data.get("ready_since"),
            failure=data.get("failure"),
            retire_reason=data.get("retire_reason"),
            # Documents written before handles had a pid instead: the handle is unknown then,
            # and the platform's `adopt` finds the instance again by its id.
            handle=data.get("handle"),
        )


def flag_release(key: str, variant: str) -> str:
    """The pseudo-release a flag variant's traffic is counted under (`flag:<key>=<variant>`):
    the router counts it, the flag guards analyse it like a release."""
    return f"flag:{key}={variant}"


def is_flag_release(name: str) -> bool:
    """Whether `name` is a flag variant's pseudo-release (`flag_release`), not a release."""
    return name.startswith("flag:")


@dataclass(frozen=True, slots=True)
class Revision:
    """One deploy of a release: its spec as deployed, and how its rollout ended."""

    number: int
    version: str
    strategy: str
    spec: dict[str, Any]
    created_at: float
    finished_at: float | None
    outcome: str
    reason: str
    db_schema: str | None = None  # the database schema its release used (expand-contract)

    def to_json(self, *, with_spec: bool = False) -> dict[str, Any]:
        doc = {
            "revision": self.number,
            "version": self.version,
            "strategy": self.strategy,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "db_schema": self.db_schema,
        }
        if with_spec:
            doc["spec"] = self.spec
        return doc


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the decision log, as stored (`id` grows with every entry of a store)."""

    id: int
    at: float
    revision: int | None
    kind: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "revision": self.revision,
            "kind": self.kind,
            "message": self.message,
        }


EventRow = tuple[float, int | None, str, str]
"""A decision-log entry to store: (at, revision, kind, message)."""


class CheckState(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # analysis could not decide: a person must


@dataclass(frozen=True, slots=True)
class Check:
    """A step of the pipeline the engine runs for a rollout (gate, migration, smoke tests,
    compatibility, analysis, flag changes), and what came of it."""

    kind: str
    state: CheckState = CheckState.RUNNING
    reason: str = ""
    started_at: float = 0.0
    finished_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # measurements, smoke results, reverts

    @property
    def done(self) -> bool:
        return self.state is not CheckState.RUNNING

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state.value,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        return cls(
            kind=data["kind"],
            state=CheckState(data.get("state", "running")),
            reason=data.get("reason", ""),
            started_at=float(data.get("started_at", 0.0)),
            finished_at=data.get("finished_at"),
            detail=dict(data.get("detail") or {}),
        )


class RolloutPhase(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"  # the new release could not be made to serve; traffic is back on stable
    ABORTED = "aborted"  # stopped by a person or by analysis; traffic is back on stable
    SUPERSEDED = "superseded"  # a newer deploy replaced it before it finished

    @property
    def active(self) -> bool:
        return self in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)


@dataclass(frozen=True, slots=True)
class Rollout:
    revision: int
    version: str
    strategy: str  # rolling | blue_green | canary
    started_at: float
    previous: str | None = None  # the stable release when it started
    phase: RolloutPhase = RolloutPhase.PROGRESSING
    step: int = 0  # canary: index of the current step
    step_started_at: float = 0.0
    progress_at: float = 0.0  # last time the rollout moved forward (for progress_deadline)
    finished_at: float | None = None
    reason: str = ""  # why it is in its phase, in words
    pause_reason: str = ""
    switched_at: float | None = None  # blue-green: when traffic moved to the new release
    rollback: bool = False  # this rollout is a rollback to an earlier revision
    checks: dict[str, Check] = field(default_factory=dict)  # by key, e.g. "gate", "analysis:step-2"

    @property
    def active(self) -> bool:
        return self.phase.active

    def with_check(self, key: str, check: Check) -> Rollout:
        return replace(self, checks={**self.checks, key: check})

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "version": self.version,
            "strategy": self.strategy,
            "started_at": self.started_at,
            "previous": self.previous,
            "phase": self.phase.value,
            "step": self.step,
            "step_started_at": self.step_started_at,
            "progress_at": self.progress_at,
            "finished_at": self.finished_at,
            "reason": self.reason,
            "pause_reason": self.pause_reason,
            "switched_at": self.switched_at,
            "rollback": self.rollback,
            "checks": {key: c.to_json() for key, c in self.checks.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        fields = {k: v for k, v in data.items() if k in cls.__slots__}
        fields["phase"] = RolloutPhase(fields.get("phase", "progressing"))
        fields["checks"] = {k: Check.from_json(c) for k, c in (data.get("checks") or {}).items()}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Decision:
    """One reconcile pass's conclusions: the status to persist, then the actions to carry out."""

    status: ServiceStatus
    actions: tuple[Action, ...] = ()


# Crash-loop backoff, Kubernetes' numbers: the first replacement is immediate, then 10 s doubling up
# to 5 min between starts of a release whose instances keep failing; ten quiet minutes forget it.
CRASH_BACKOFF_FIRST = 10.0
CRASH_BACKOFF_MAX = 300.0
CRASH_FORGET_AFTER = 600.0


@dataclass(frozen=True, slots=True)
class Crashes:
    """Instances of one release that failed (exited, failed a startup or liveness probe, could
    not be launched) within CRASH_FORGET_AFTER of each other."""

    count: int
    last_at: float

    def after(self, now: float) -> Crashes:
        """With one more failure at `now`."""
        recent = now - self.last_at < CRASH_FORGET_AFTER
        return Crashes(count=self.count + 1 if recent else 1, last_at=now)

    def hold_until(self, slots: int = 1) -> float:
        """No new instance of the release starts before this time. Kubernetes backs off per
        container: each of a release's `slots` instances restarts its first failure at once,
        so two instances frozen together are both replaced at once instead of the second
        waiting 10 s while the release serves nothing (found by bench/chaos.py)."""
        beyond = self.count - max(1, slots)
        if beyond < 1:
            return self.last_at
        return self.last_at + min(CRASH_BACKOFF_FIRST * 2.0 ** (beyond - 1), CRASH_BACKOFF_MAX)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "last_at": self.last_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Crashes:
        return cls(count=int(data["count"]), last_at=float(data["last_at"]))


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: str
    stable: str | None = None  # the release that serves when no rollout is active
    rollout: Rollout | None = None  # the newest rollout, finished or not
    routes: RouteTable = field(default_factory=lambda: RouteTable(generation=0))
    last_decision: str = ""
    last_decision_at: float | None = None
    stopping: bool = False  # `zerodown down`: retire everything
    crashes: dict[str, Crashes] = field(default_factory=dict)  # by release, for the backoff

    def with_decision(self, message: str, now: float) -> ServiceStatus:
        return replace(self, last_decision=message, last_decision_at=now)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "stable": self.stable,
            "rollout": None if self.rollout is None else self.rollout.to_json(),
            "routes": self.routes.to_json(),
            "last_decision": self.last_decision,
            "last_decision_at": self.last_decision_at,
            "stopping": self.stopping,
            "crashes": {release: c.to_json() for release, c in self.crashes.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceStatus:
        rollout = data.get("rollout")
        return cls(
            service=data["service"],
            stable=data.get("stable"),
            rollout=None if rollout is None else Rollout.from_json(rollout),
            routes=RouteTable.from_json(data.get("routes") or {"generation": 0}),
            last_decision=data.get("last_decision", ""),
            last_decision_at=data.get("last_decision_at"),
            stopping=bool(data.get("stopping", False)),
            crashes={r: Crashes.from_json(c) for r, c in (data.get("crashes") or {}).items()},
        )


# Actions: what the engine must do, in the order given.


@dataclass(frozen=True, slots=True)
class Record:
    """A decision and its reason, written to the store before anything is acted on."""

    kind: str  # launch, retire, promote, complete, fail, abort, pause, step, …
    message: str
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class ApplyRoutes:
    table: RouteTable


@dataclass(frozen=True, slots=True)
class Launch:
    """Start `count` instances of `release` (the engine runs them with that release's spec);
    with several hosts, `hosts` names the host of each (core/hosts.py)."""

    release: str
    count: int
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retire:
    """Out of routing (already, by the ApplyRoutes before it), drain, then stop."""

    instance: str
    reason: str


Action = Record | ApplyRoutes | Launch | Retire
