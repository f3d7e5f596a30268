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
- **Platform**: `launch` places one instance of a release and returns where it listens and an
  opaque handle the engine persists; the handle alone lets any later controller observe, stop,
  read logs of and exec into that instance, and a handle that no longer names the instance it
  named (a recycled pid, a replaced container) is never acted on. `adopt` finds the instances of
  this state directory still running, even ones whose handle was never recorded. `stop` drains
  nothing (the engine did): it sends the stop signal, waits `grace`, then kills.
- **StateStore**: one writer (the controller); `save` writes the status and its decision records
  in one transaction; reads never see half a save.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from zerodown.core.analysis.stats import Sample
from zerodown.core.model import Event, Instance, Revision, Rollout, ServiceStatus
from zerodown.core.routes import ReleaseStats, RouteTable


@dataclass(frozen=True, slots=True)
class BackendLoad:
    """What the router knows of one backend address."""

    release: str
    inflight: int
    requests: int


@runtime_checkable
class Router(Protocol):
    async def start(self) -> None: ...
    async def stop(self, *, grace: float) -> None: ...
    async def healthy(self) -> bool: ...
    async def apply(self, table: RouteTable) -> None: ...
    async def table(self) -> RouteTable: ...
    async def verify(self, table: RouteTable) -> bool | None:
        """True when the router runs `table`; None when it cannot tell."""
        ...

    async def backends(self) -> Mapping[str, BackendLoad]: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class RouterStats(Protocol):
    async def stats(self) -> Mapping[str, ReleaseStats]:
        """Cumulative counters per release."""
        ...

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        """Per-request (timestamp, latency seconds, status) of `release` since `since`."""
        ...


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
    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: Any,  # spec.model.RunSpec (core does not depend on driver-specific run fields)
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        """Start one instance; `taken` are addresses other instances hold."""
        ...

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        """None while the instance runs."""
        ...

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        """Signal, wait `grace`, then kill. Returns how it ended, for the log."""
        ...

    async def adopt(self) -> Mapping[str, str]:
        """Handles of this state directory's running instances, by instance id."""
        ...

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run a command where the instance runs (exec probes)."""
        ...

    async def logs(self, *, instance_id: str, lines: int) -> str: ...
    async def aclose(self) -> None: ...


class StateStore(Protocol):
    def status(self, service: str) -> ServiceStatus: ...
    def save(
        self, status: ServiceStatus, events: Sequence[tuple[float, int | None, str, str]] = ()
    ) -> None: ...
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
