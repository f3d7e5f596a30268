"""The ports: what the engine asks of a router, a platform and a state store.

The engine and the API are written against these protocols only; a driver is one module that
satisfies one of them structurally (no base class to inherit) plus a registry entry
(`zerodown.drivers`). Every driver passes the same contract suite (tests/contract/).

What every driver guarantees:

- **Router**: `apply` is atomic and idempotent (the whole table or nothing; applying the table
  already running changes nothing); `table` reads back what traffic follows now; `backends` gives
  the in-flight count of every address it still knows, so the engine can drain before it stops an
  instance. `start` makes sure the router runs (starting or attaching to its process where it has
  one) and is cheap when it does; `stop` is called only by `zerodown down`. Failures raise
  TransientDriverError (retry next pass) or PermanentDriverError (the user must change something).
- **RouterStats** (a separate capability, so the router metric provider and the flag guards ask
  for it instead of importing a router): cumulative counters per release and per-request samples.
- **Platform**: `launch` places one instance of a release (the platform picks its address) and
  returns where it listens and an opaque handle the engine persists; the handle alone lets any
  later controller observe, stop and exec into that instance, and a handle that no longer names
  the instance it named (a recycled pid, a replaced container) is never acted on. `adopt` finds
  the instances of this state directory still running, with their placement, even ones whose
  launch was never recorded (the controller died in between). `stop` drains nothing (the engine
  did): it sends the stop signal, waits `grace`, then kills, and always returns. `launch` raises
  PermanentDriverError with what to fix when this release cannot start this way. `prepare` gets a
  release ready everywhere it may run before its rollout launches or stops anything, and is
  cheap when it is ready already (a restarted controller calls it again).
- **StateStore**: one writer (the controller); `save` writes the status and its decision records
  in one transaction; reads never see half a save. Every call returns or raises StoreUnavailable
  within seconds, never hangs (the calls run on the controller's event loop).
- **LeaseStore** (a capability of the built-in stores): the leader lease of several controllers
  on one store. `claim` renews or takes a service's lease in one transaction, with the store's
  clock; a new holder gets a larger fencing token. Once `fence` names a token, every write of
  this store object checks it in the write's own transaction and raises NotLeader when another
  controller has taken the lease since (or when the token is None: a standby writes nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from zerodown.core.analysis.context import StatsSource
from zerodown.core.model import Event, EventRow, Instance, Revision, Rollout, ServiceStatus
from zerodown.core.routes import RouteTable
from zerodown.spec.model import RunSpec


@dataclass(frozen=True, slots=True)
class BackendLoad:
    """What the router knows of one backend address."""

    release: str
    inflight: int
    requests: int


@runtime_checkable
class Router(Protocol):
    async def start(self) -> None:
        """Make sure the router runs; cheap when it does (called before every pass)."""
        ...

    async def stop(self, *, grace: float) -> None:
        """Stop the router's own process, if it has one (`zerodown down`, at the very end)."""
        ...

    async def healthy(self) -> bool: ...
    async def apply(self, table: RouteTable) -> None: ...
    async def table(self) -> RouteTable: ...
    async def verify(self, table: RouteTable) -> bool | None:
        """True when the router runs `table`; None when it cannot tell."""
        ...

    async def backends(self) -> Mapping[str, BackendLoad]: ...
    async def aclose(self) -> None: ...


RouterStats = StatsSource
"""The router's traffic figures (runtime checkable): the analysis context's `StatsSource`, defined
there because the ports import core.analysis, never the reverse (that would tie the analysis
context to the spec models through this module)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a launched instance listens, and the platform's opaque handle to it."""

    address: str  # host:port the router sends to
    handle: str


@dataclass(frozen=True, slots=True)
class Exited:
    """An instance that is no longer running, and why, for the decision log."""

    reason: str  # e.g. "process exited (status 1): Traceback … | KeyError: 'PORT'"


@dataclass(frozen=True, slots=True)
class ExecResult:
    code: int
    output: str  # the tail of stdout and stderr


@runtime_checkable
class Platform(Protocol):
    async def prepare(self, *, release: str, run: RunSpec) -> None:
        """Get `release` ready to launch everywhere it may run (pull the image, ship the files)
        before the rollout starts; raises PermanentDriverError with the reason (e.g. the
        registry's answer), which fails the rollout before any instance starts or leaves."""
        ...

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        """Start one instance of `release` with `env` added to its environment; `taken` are
        the addresses other instances hold."""
        ...

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        """None while the instance runs."""
        ...

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        """Signal, wait `grace`, then kill. Returns how it ended, for the log."""
        ...

    async def adopt(self) -> Mapping[str, Placement]:
        """This state directory's running instances, by instance id."""
        ...

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run a command where the instance runs (exec probes)."""
        ...

    async def logs(self, *, instance_id: str, lines: int) -> str:
        """The last `lines` lines the instance wrote, joined by " | " ("" when there are none)."""
        ...

    async def aclose(self) -> None:
        """Let go of the platform (the instances keep running)."""
        ...


class StateStore(Protocol):
    def status(self, service: str) -> ServiceStatus: ...
    def save(self, status: ServiceStatus, events: Sequence[EventRow] = ()) -> None:
        """The status, its rollout's revision row and the decision records, in one transaction."""
        ...

    def add_events(self, service: str, events: Sequence[EventRow]) -> None:
        """Decision-log entries that change no status (errors, probe reports, flag guards)."""
        ...

    def instances(self, service: str) -> list[Instance]: ...
    def put_instance(self, service: str, instance: Instance) -> None: ...
    def delete_instance(self, instance_id: str) -> None: ...
    def add_revision(
        self, service: str, *, version: str, strategy: str, spec: dict[str, Any], now: float
    ) -> int: ...
    def revisions(self, service: str) -> list[Revision]: ...
    def revision(self, service: str, number: int) -> Revision | None: ...
    def set_revision_schema(self, service: str, number: int, schema: str) -> None: ...
    def end_revision(self, service: str, rollout: Rollout) -> None: ...
    def events(self, service: str, *, after: int = 0, limit: int = 200) -> list[Event]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Lease:
    """A service's leader lease: its holder (a controller id, hostname:pid), the fencing token
    of the holder's term (one more at every change of holder), when the term began and when the
    lease runs out unless renewed (both in the store's clock, seconds since the epoch)."""

    holder: str
    token: int
    since: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ControllerSeen:
    """A controller that claimed (leader) or asked for (standby) a service's lease."""

    id: str
    url: str
    seen_at: float  # the store's clock


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads, who else was seen, and the store's clock when it was read."""

    lease: Lease | None
    controllers: tuple[ControllerSeen, ...]
    now: float


@runtime_checkable
class LeaseStore(Protocol):
    def claim(
        self, service: str, holder: str, *, ttl: float, url: str = "", dead: str | None = None
    ) -> Lease | None:
        """Renew `holder`'s lease, or take it when it is free, has run out, or is held by
        `dead` (a holder known to be gone); None while another holder's lease runs. Records
        that `holder` was seen, leader or not."""
        ...

    def fence(self, service: str, holder: str, token: int | None) -> None:
        """From now on every write checks this lease in its own transaction (None: refuse
        every write)."""
        ...

    def release(self, service: str, holder: str) -> None:
        """End `holder`'s lease now (a clean exit), so that a standby need not wait it out."""
        ...

    def leadership(self, service: str) -> Leadership: ...
