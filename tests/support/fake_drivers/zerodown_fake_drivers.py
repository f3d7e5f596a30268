"""A fake world for the engine: a router, a platform and a state store that run nothing.

This is a third-party driver package in miniature: one module, and the entry points of
`zerodown_fake_drivers-0.0.dist-info/entry_points.txt` (`router: {kind: fake}`, `platform: {kind:
fake}`, `state: {url: "fake://"}`); zerodown finds it through `zerodown.drivers` exactly as it
would find an installed plug-in (tests/support puts this directory on sys.path).

Everything the drivers do happens at once, in a `FakeWorld` (one per state directory, found
through `DriverContext.paths`), which a test scripts and inspects:

- faults: `launch_error` (raised by the next launches), `prepare_error` (raised by `prepare`,
  whose calls `prepared` lists; it awaits `prepare_wait` first, e.g. a sleep on the fake clock),
  `router_reachable` (False: every admin call raises TransientDriverError, as when the admin
  socket is gone), `store_locked` (every store call raises StoreUnavailable, as when another
  process holds the SQLite lock);
- probe outcomes (`FakeProber`): instances of `unhealthy` releases and `failing` instances fail
  every probe; every other probe passes;
- `crash(instance)`: the instance exits, as after a kill -9;
- what happened: `tables` (every route table applied), `stopped` (instance ids, in order), and
  `violations`: the world checks the rules a platform can see broken (an instance stopped while
  the router's table still sends to it; a stale handle acted on) and lists them here.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import StoreUnavailable, TransientDriverError
from zerodown.core.model import Instance
from zerodown.core.ports import BackendLoad, ExecResult, Exited, Placement
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.drivers import DriverContext
from zerodown.probes.checks import ProbeResult
from zerodown.spec.model import ProbeSpec, RunSpec
from zerodown.store.sqlite import SqliteStore


@dataclass
class FakeInstance:
    id: str
    release: str
    address: str
    handle: str
    env: dict[str, str]
    running: bool = True
    exit_reason: str = ""


@dataclass
class FakeWorld:
    state_dir: Path
    instances: dict[str, FakeInstance] = field(default_factory=dict)  # every launch, by id
    table: RouteTable | None = None  # what the router runs
    tables: list[RouteTable] = field(default_factory=list)
    inflight: dict[str, int] = field(default_factory=dict)  # by address
    router_running: bool = False
    router_reachable: bool = True
    router_starts: int = 0
    launch_error: Exception | None = None
    prepare_error: Exception | None = None  # raised by `prepare` (a missing image, say)
    prepared: list[str] = field(default_factory=list)  # releases, in the order prepared
    prepare_wait: Callable[[], Awaitable[None]] | None = None  # awaited by `prepare` (a slow pull)
    store_locked: bool = False
    unhealthy: set[str] = field(default_factory=set)  # releases whose probes all fail
    failing: set[str] = field(default_factory=set)  # instance ids whose probes all fail
    stopped: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _ports: Any = field(default_factory=lambda: itertools.count(20000))
    _store: SqliteStore | None = None

    worlds: ClassVar[dict[Path, FakeWorld]] = {}

    @classmethod
    def at(cls, state_dir: Path) -> FakeWorld:
        """The world of this state directory (made on first use)."""
        key = state_dir.resolve()
        if key not in cls.worlds:
            cls.worlds[key] = cls(state_dir=key)
        return cls.worlds[key]

    def close(self) -> None:
        self.worlds.pop(self.state_dir, None)
        if self._store is not None:
            self._store.close()

    # --- what tests do and read ----------------------------------------------------------------

    def crash(self, instance_id: str, reason: str = "process exited (killed by SIGKILL)") -> None:
        instance = self.instances[instance_id]
        instance.running, instance.exit_reason = False, reason

    def running(self, release: str | None = None) -> list[FakeInstance]:
        return [
            i
            for i in self.instances.values()
            if i.running and (release is None or i.release == release)
        ]

    def routed_releases(self) -> set[str]:
        """Releases the router sends some traffic to now (by weight or by match)."""
        table = self.table or RouteTable(generation=0)
        weighted = {p.release for p in table.pools if p.weight > 0 and p.backends}
        return weighted | {m.release for m in table.matches}

    def store(self) -> SqliteStore:
        """The world's state, in memory: it outlives a controller, as a file would."""
        if self._store is None:
            self._store = SqliteStore(":memory:")
        return self._store


class FakeRouter:
    """Router and RouterStats. `start` starts the router (counted) when it does not run."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.stats_by_release: dict[str, ReleaseStats] = {}
        self.samples_by_release: dict[str, list[Sample]] = {}

    def _admin(self) -> None:
        if not self.world.router_reachable:
            raise TransientDriverError("the fake router's admin API is unreachable")
        if not self.world.router_running:
            raise TransientDriverError("the fake router is not running")

    async def start(self) -> None:
        if not self.world.router_reachable:
            raise TransientDriverError("the fake router's admin API is unreachable")
        if not self.world.router_running:
            self.world.router_running = True
            self.world.router_starts += 1

    async def stop(self, *, grace: float) -> None:
        self.world.router_running = False

    async def healthy(self) -> bool:
        return self.world.router_running and self.world.router_reachable

    async def apply(self, table: RouteTable) -> None:
        self._admin()
        if table != self.world.table:
            self.world.tables.append(table)
        self.world.table = table

    async def table(self) -> RouteTable:
        self._admin()
        return self.world.table or RouteTable(generation=0)

    async def verify(self, table: RouteTable) -> bool | None:
        if not (self.world.router_reachable and self.world.router_running):
            return None
        current = self.world.table or RouteTable(generation=0)
        return current.generation == table.generation and current.same_routing(table)

    async def backends(self) -> dict[str, BackendLoad]:
        self._admin()
        table = self.world.table or RouteTable(generation=0)
        return {
            b.address: BackendLoad(p.release, self.world.inflight.get(b.address, 0), 0)
            for p in table.pools
            for b in p.backends
        }

    async def stats(self) -> dict[str, ReleaseStats]:
        self._admin()
        return dict(self.stats_by_release)

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        self._admin()
        return [s for s in self.samples_by_release.get(release, []) if s[0] >= since]

    async def aclose(self) -> None:
        pass


class FakePlatform:
    """Platform: an instance is a record in the world; its handle is "fake:<port>"."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        if self.world.prepare_wait is not None:
            await self.world.prepare_wait()
        if self.world.prepare_error is not None:
            raise self.world.prepare_error
        self.world.prepared.append(release)

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        if self.world.launch_error is not None:
            raise self.world.launch_error
        address = next(a for a in (f"127.0.0.1:{p}" for p in self.world._ports) if a not in taken)
        handle = f"fake:{address.rpartition(':')[2]}"
        self.world.instances[instance_id] = FakeInstance(
            instance_id, release, address, handle, dict(env)
        )
        return Placement(address=address, handle=handle)

    def _named(self, instance_id: str, handle: str) -> FakeInstance | None:
        """The instance the handle names, if it is still that one."""
        instance = self.world.instances.get(instance_id)
        return instance if instance is not None and instance.handle == handle else None

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        instance = self._named(instance_id, handle)
        if instance is None:
            return Exited(f"{instance_id} is unknown to the fake platform")
        return None if instance.running else Exited(instance.exit_reason)

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        instance = self._named(instance_id, handle)
        if instance is None or not instance.running:
            return "already gone"
        table = self.world.table
        routed = table is not None and instance.address in table.addresses()
        if routed and self.world.router_reachable:  # `down` may stop without the router's word
            self.world.violations.append(f"{instance_id} stopped while the router sends to it")
        instance.running = False
        instance.exit_reason = f"stopped by {stop_signal}"
        self.world.stopped.append(instance_id)
        return f"exited after {stop_signal}"

    async def adopt(self) -> dict[str, Placement]:
        return {i.id: Placement(i.address, i.handle) for i in self.world.running()}

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        instance = self._named(instance_id, handle)
        if instance is None or not instance.running:
            raise TransientDriverError(f"{instance_id} is not running")
        # It "runs" `true` and `false`; any other command passes unless the instance fails.
        failing = instance.release in self.world.unhealthy or instance_id in self.world.failing
        return ExecResult(code=1 if failing or argv[0] == "false" else 0, output="")

    async def logs(self, *, instance_id: str, lines: int) -> str:
        return ""

    async def aclose(self) -> None:
        pass


class FakeProber:
    """Probe outcomes from the world, at once (http and tcp never touch the network)."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    async def check(self, probe: ProbeSpec, instance: Instance) -> ProbeResult:
        if instance.release in self.world.unhealthy or instance.id in self.world.failing:
            return ProbeResult(False, f"{instance.id} fails its probes (fake)")
        return ProbeResult(True, "ok (fake)")


class FakeStore:
    """The world's in-memory SQLite store, refusing every call while `store_locked`."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.inner = world.store()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.world.store_locked:
                raise StoreUnavailable("the state store is unavailable: database is locked (fake)")
            return method(*args, **kwargs)

        return call

    def close(self) -> None:
        """The world keeps its state for the next controller."""


def create_router(ctx: DriverContext) -> FakeRouter:
    return FakeRouter(FakeWorld.at(ctx.paths.state))


def create_platform(ctx: DriverContext) -> FakePlatform:
    return FakePlatform(FakeWorld.at(ctx.paths.state))


def create_store(ctx: DriverContext) -> FakeStore:
    return FakeStore(FakeWorld.at(ctx.paths.state))
