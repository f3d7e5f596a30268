"""The reconcile loop: observe, `decide`, persist, act. One per service.

The engine speaks only to the ports (core/ports.py): a StateStore, a Platform, a Router (and the
router's stats, when it keeps them). It imports no driver; the controller picks them by the spec.

Every pass reads the store, so the loop holds nothing in memory that matters: a controller killed
at any moment and restarted resumes from the store, adopts the instances it launched, and reaches
the same decisions. The order inside a pass keeps the rules of the rollout:

1. the decision and its records are persisted before anything is acted on;
2. routes are applied (atomically, by the router) before any instance leaves them;
3. an instance drains and stops only once the router confirms it is out of the table;
4. a launch is written to the store before the platform starts it, then adopted if we crash;
5. an active rollout's release is prepared on the platform (`prepare.py`) before its first
   decision: a release that cannot be had fails the rollout before anything starts or leaves.

No error ends the loop (faults.py): a failed pass is logged with its traceback, written to the
decision log once as an `error` event, and retried after a capped backoff; `status` shows the
last completed pass and the last error. A launch that fails (a missing command, an environment
too large, anything the platform raises) marks its instance failed with the reason, and core's
rule for failed instances fails the rollout with it. Instance ids, and so log file names, never
carry a version that is not a safe name (`instance_id`).

Time comes from `clock` and every wait of the engine's own goes through it, and probes go through
`prober`: a test drives the engine pass by pass (`step`) on a fake world and a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from zerodown import logs
from zerodown.core.decide import decide
from zerodown.core.errors import (
    DriverError,
    NotLeader,
    PermanentDriverError,
    StoreUnavailable,
    TransientDriverError,
)
from zerodown.core.model import (
    ApplyRoutes,
    EventRow,
    Instance,
    InstancePhase,
    Launch,
    Record,
    Retire,
    RolloutPhase,
    ServiceStatus,
)
from zerodown.core.ports import (
    Placement,
    Platform,
    Router,
    RouterStats,
    StateStore,
    TunnelCloser,
)
from zerodown.core.routes import RouteTable
from zerodown.engine.check_tasks import CheckTasks
from zerodown.engine.clock import SYSTEM_CLOCK, Clock
from zerodown.engine.faults import PassHealth, describe
from zerodown.engine.guards import FlagGuards
from zerodown.engine.health import Monitor
from zerodown.engine.hosts import HostViews, host_env
from zerodown.engine.prepare import Preparations
from zerodown.flags.stores import FlagStore
from zerodown.migrations.url import database_url
from zerodown.notify import Notifier
from zerodown.probes.checks import PlatformProber, Prober
from zerodown.spec.model import Spec
from zerodown.spec.types import check_version

log = logging.getLogger("zerodown.engine")

PASS_INTERVAL = 0.25  # seconds between passes when nothing wakes the loop
PASS_TIMEOUT = 60.0  # a pass still running after this is cancelled and counted as failed
LOG_MAINTENANCE_EVERY = 60.0  # seconds between log rotation and pruning runs
OUT_OF_ROUTES_ON_DOWN = 10.0  # `zerodown down` stops an instance the router cannot confirm gone
RETIRE_RETRY = 1.0  # seconds before a retirement that failed is started again
VERIFY_ROUTES_EVERY = 1.0  # seconds between checks that the router runs the table we applied

# Decision records that are worth a webhook, by the event name `notify.events` uses.
NOTIFY_EVENTS = {
    "deploy": "started",
    "step": "step",
    "pause": "paused",
    "resume": "resumed",
    "promote": "promoted",
    "switch": "promoted",
    "aborted": "aborted",
    "abort": "aborted",
    "complete": "completed",
    "failed": "failed",
}


def instance_id(service: str, version: str) -> str:
    """`<service>-<version>-<random>`; a version that is not a safe name (a store written before
    versions were checked) is reduced to safe characters and told apart by a hash of it."""
    try:
        safe = check_version(version)
    except ValueError:
        digest = hashlib.sha256(version.encode(errors="surrogatepass")).hexdigest()[:8]
        cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", version)[:32].strip("._+-")
        safe = f"{cleaned}-{digest}" if cleaned else digest
    return f"{service}-{safe}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class DrainingTunnels:
    """Upgraded connections a retiring instance still holds, and when they will be closed."""

    release: str
    address: str
    open: int
    closes_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "release": self.release,
            "address": self.address,
            "open": self.open,
            "closes_at": self.closes_at,
        }


class Engine:
    def __init__(
        self,
        *,
        service: str,
        store: StateStore,
        platform: Platform,
        router: Router,
        stats: RouterStats | None = None,
        spec_dir: Path,
        flags: FlagStore | None = None,
        prober: Prober | None = None,
        clock: Clock = SYSTEM_CLOCK,
        log_dir: Path | None = None,
        log_policy: logs.LogPolicy | None = None,
        must_act: Callable[[str], None] = lambda _what: None,
    ) -> None:
        self.service = service
        self.store = store
        self.platform = platform
        self.router = router
        self.spec_dir = spec_dir
        self.prober = prober or PlatformProber(platform)
        self.clock = clock
        # Raises NotLeader when another controller leads (engine/leadership.py): asked before
        # every action outside the store, whose own writes are fenced by the lease.
        self.must_act = must_act
        self.wake = asyncio.Event()
        self.monitors: dict[str, Monitor] = {}
        self.retiring: dict[str, asyncio.Task[None]] = {}
        # Retiring instances that still hold upgraded connections (WebSockets): for `status`.
        self.draining_tunnels: dict[str, DrainingTunnels] = {}
        self.applied: RouteTable | None = None
        self._routes_verified_at = 0.0
        self._specs: dict[int, Spec] = {}
        self.stopped = asyncio.Event()  # set once `zerodown down` has finished, and only then
        self.health = PassHealth(started_at=clock.now())
        self.outbox: deque[EventRow] = deque(maxlen=100)  # decision-log entries not yet stored
        self.stopping = False  # the last pass saw `zerodown down`
        self._started = False  # `start` has completed
        self._launched: dict[str, Placement] = {}  # until the store has the handle
        self.log_dir = log_dir  # the controller's, the router's and the instances' logs, if here
        self.log_policy = log_policy or logs.LogPolicy()
        self._logs_kept_at = -LOG_MAINTENANCE_EVERY
        self.check_tasks = CheckTasks(
            service=service,
            store=store,
            spec_dir=spec_dir,
            stats_source=stats,
            flags=flags,
            spec_of_revision=self.spec_of,
            poke=self.poke,
            clock=clock,
            router=router,
        )
        self.guards = (
            FlagGuards(service=service, flags=flags, stats_source=stats, record=self._record)
            if flags is not None
            else None
        )
        self.notifiers: dict[int, Notifier] = {}
        self.preparations = Preparations(platform, poke=self.poke)
        self.host_views = HostViews(platform, clock=clock, post=self._post)
        last = store.events(service, limit=1)
        self._notified = last[-1].id if last else 0  # no replay of what happened before a restart

    # --- specs of revisions ----------------------------------------------------------------

    def spec_of(self, revision: int) -> Spec:
        if revision not in self._specs:
            found = self.store.revision(self.service, revision)
            if found is None:
                raise PermanentDriverError(f"revision {revision} is not in the store")
            self._specs[revision] = Spec.model_validate(found.spec)
        return self._specs[revision]

    def revision_of(self, status: ServiceStatus, release: str) -> int:
        """The revision whose spec runs `release`: the rollout's, or its last completed one."""
        rollout = status.rollout
        if rollout is not None and rollout.version == release and rollout.active:
            return rollout.revision
        revisions = [r for r in self.store.revisions(self.service) if r.version == release]
        completed = [r for r in revisions if r.outcome == RolloutPhase.COMPLETED.value]
        chosen = (completed or revisions)[-1]
        return chosen.number

    def current_spec(self, status: ServiceStatus) -> Spec | None:
        rollout = status.rollout
        if rollout is not None and (rollout.active or rollout.version == status.stable):
            return self.spec_of(rollout.revision)
        if status.stable is not None:
            return self.spec_of(self.revision_of(status, status.stable))
        if rollout is not None:
            return self.spec_of(rollout.revision)
        return None

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Pass after pass until `zerodown down` has finished. No exception ends it."""
        while not self.stopped.is_set():
            backoff = await self.step()
            if self.stopped.is_set():
                break
            if backoff:
                await self.clock.sleep(backoff)  # not cut short by pokes: that is the point
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PASS_INTERVAL):
                        await self.wake.wait()
            self.wake.clear()

    async def step(self) -> float:
        """One pass as `run` makes it (after `start`, the first time), its error recorded if it
        fails; sets `stopped` once `zerodown down` has finished. Returns the seconds to wait
        before the next pass (the backoff after a failure, else 0)."""
        try:
            if not self._started:
                await self.start()
                self._started = True
            done = await self._pass()
        except NotLeader as exc:  # another controller leads: not a fault of this pass
            log.warning("%s", exc)
            done, backoff = False, PASS_INTERVAL
        except Exception as exc:  # per pass: recorded, then retried (CancelledError is not)
            done, backoff = False, self._failed(exc)
            if not isinstance(exc, StoreUnavailable):  # else the next pass that works writes
                self._flush()
        else:
            backoff = 0.0
            recovered = self.health.passed(self.clock.now())
            if recovered:
                self.outbox.append(
                    (self.clock.now(), None, "recovered", f"after {recovered} failed passes")
                )
                log.info("reconcile passes complete again after %d failed", recovered)
            self._flush()
        await self._keep_logs()
        if done:
            self.stopped.set()
        return backoff

    async def start(self) -> None:
        """Before the first pass: the router (it may have died while no controller ran), then
        the instances a previous controller left running (not the router, once `zerodown down`
        has begun: a standby taking over then only finishes it)."""
        self.must_act("starting")
        if not self.store.status(self.service).stopping:
            await self.router.start()
        await self.adopt()

    async def _pass(self) -> bool:
        try:
            async with asyncio.timeout(PASS_TIMEOUT) as limit:
                return await self.reconcile()
        except TimeoutError:
            if limit.expired():
                raise TransientDriverError(
                    f"a reconcile pass did not finish within {PASS_TIMEOUT:g}s"
                ) from None
            raise

    def _failed(self, exc: Exception) -> float:
        """Log and record a failed pass; the seconds to wait before the next one."""
        now = self.clock.now()
        message = self.health.failed(exc, now)
        if message is not None:
            log.error("%s", message, exc_info=exc)
            self.outbox.append((now, None, "error", message))
        return self.health.backoff()

    def _post(self, kind: str, message: str, revision: int | None = None) -> None:
        """A decision-log entry from outside a pass's decision: written now if the store takes
        it, else by the next pass that can."""
        log.info("%s: %s", kind, message)
        self.outbox.append((self.clock.now(), revision, kind, message))
        self._flush()

    def _flush(self) -> None:
        if not self.outbox:
            return
        try:
            self.store.add_events(self.service, list(self.outbox))
        except Exception as exc:
            log.debug("the decision log waits for the store: %s", exc)
            return
        self.outbox.clear()

    async def _keep_logs(self) -> None:
        """Rotate the logs and prune gone instances' ones, once a minute, off the event loop."""
        now, directory = self.clock.now(), self.log_dir
        if directory is None or now - self._logs_kept_at < LOG_MAINTENANCE_EVERY:
            return
        self._logs_kept_at = now
        try:
            known: set[str] | None = {i.id for i in self.store.instances(self.service)}
        except Exception:
            known = None  # rotate anyway; prune only knowing which instances are alive
        try:
            await asyncio.to_thread(
                logs.maintain,
                directory,
                prefix=f"{self.service}-",
                live=known,
                policy=self.log_policy,
                now=now,
            )
        except Exception as exc:
            log.warning("log rotation: %s", describe(exc))

    def poke(self) -> None:
        self.wake.set()

    async def adopt(self) -> None:
        """Match the store's instances with the platform's running ones; record placements we
        never saw, and forget launches that never started (the controller stopped in between).
        With no instance in the store there is nothing to match: the platform is not asked (a
        first `up` then reaches the rollout, which says why the platform cannot serve)."""
        instances = self.store.instances(self.service)
        if not instances:
            return
        found = await self.platform.adopt()
        for instance in instances:
            placement = found.get(instance.id)
            if placement is not None and (instance.address, instance.handle) != (
                placement.address,
                placement.handle,
            ):
                placed = replace(instance, address=placement.address, handle=placement.handle)
                self.store.put_instance(self.service, placed)
            elif placement is None and instance.handle is None and instance.failure is None:
                self.store.delete_instance(instance.id)  # the next pass launches it again

    async def reconcile(self) -> bool:
        """One pass. True when `zerodown down` has finished."""
        self.must_act("reconciling")
        self.stopping = self.store.status(self.service).stopping
        if not self.stopping:
            await self.router.start()  # not to stop it: `down` goes on without a router
        exits = await self._exits()
        hosts = await self.host_views.refresh()
        if not await self._prepared():
            return False  # the rollout waits for its release; old instances serve on
        # From reading the store to saving the decision, nothing awaits: the API's commands
        # run on this same event loop, so none can slip in between and be overwritten.
        now = self.clock.now()
        status = self.store.status(self.service)
        self.stopping = status.stopping
        instances = self._observe(self.store.instances(self.service), exits)
        spec = self.current_spec(status)
        if spec is None:
            return status.stopping  # nothing was ever deployed, so nothing runs to be stopped
        self._watch(status, instances)
        decision = decide(spec, status, instances, now, hosts)
        records = [a for a in decision.actions if isinstance(a, Record)]
        if decision.status != status or records:
            self.store.save(
                decision.status, [(now, r.revision, r.kind, r.message) for r in records]
            )
            for r in records:
                log.info("%s: %s", r.kind, r.message)
        for action in decision.actions:
            if isinstance(action, ApplyRoutes):
                await self._apply(action.table)
            elif isinstance(action, Retire):
                self._retire(action.instance)
            elif isinstance(action, Launch):
                await self._launch(decision.status, action)
        self._resume_retirements()
        await self.check_tasks.sync(decision.status, instances)
        if self.guards is not None:
            await self.guards.sync(spec)
        self._notify()
        if self.applied is None or self.applied.generation != decision.status.routes.generation:
            await self._apply(decision.status.routes)
        else:
            await self._converge_routes(decision.status.routes)
        return decision.status.stopping and not any(
            i.phase is not InstancePhase.STOPPED for i in self.store.instances(self.service)
        )

    async def _prepared(self) -> bool:
        """False while the active rollout's release is still being prepared. A release that
        cannot be prepared fails its rollout here, before any decision of it; a transient
        error fails the pass (and the next one tries again)."""
        status = self.store.status(self.service)
        rollout = status.rollout
        if status.stopping or rollout is None or not rollout.active:
            return True
        try:
            return await self.preparations.ready(
                rollout.revision, rollout.version, self.spec_of(rollout.revision).run
            )
        except TransientDriverError:
            raise
        except Exception as exc:
            if not isinstance(exc, DriverError):
                log.exception("preparing %s", rollout.version)
            self._fail_unprepared(rollout.revision, f"cannot prepare it: {describe(exc)}")
            return True

    def _fail_unprepared(self, revision: int, reason: str) -> None:
        status = self.store.status(self.service)  # read again: the preparation awaited
        rollout = status.rollout
        if rollout is None or rollout.revision != revision or not rollout.active:
            return
        now = self.clock.now()
        failed = replace(
            rollout, phase=RolloutPhase.FAILED, reason=reason, finished_at=now, pause_reason=""
        )
        back = f"; traffic stays on {status.stable}" if status.stable else ""
        message = f"rollout of {rollout.version} failed: {reason}{back}"
        self.store.save(replace(status, rollout=failed), [(now, revision, "failed", message)])
        log.warning("%s", message)

    # --- observing -------------------------------------------------------------------------

    async def _exits(self) -> dict[str, str]:
        """Why each live instance that no longer runs has stopped, by instance id (the platform
        is asked before the pass reads the store for its decision: see `reconcile`)."""
        exits = {}
        for stored in self.store.instances(self.service):
            instance = self._with_handle(stored)
            if not instance.live or instance.handle is None or instance.failure is not None:
                continue
            exited = await self.platform.observe(instance_id=instance.id, handle=instance.handle)
            if exited is not None:
                exits[instance.id] = exited.reason
        return exits

    def _observe(self, instances: list[Instance], exits: dict[str, str]) -> list[Instance]:
        """The store's instances brought up to date with what this controller saw: placements
        of its launches, instances that exited, what the probes concluded. Each change is
        stored."""
        seen = []
        for stored in instances:
            instance = self._probed(self._exited(self._with_handle(stored), exits))
            if instance != stored:
                self.store.put_instance(self.service, instance)
            seen.append(instance)
        return seen

    def _with_handle(self, instance: Instance) -> Instance:
        placement = self._launched.get(instance.id)
        if placement is None:
            return instance
        if instance.handle is not None:
            del self._launched[instance.id]
            return instance
        return replace(instance, address=placement.address, handle=placement.handle)

    @staticmethod
    def _exited(instance: Instance, exits: dict[str, str]) -> Instance:
        """An instance that exited is failed (stopped, if it was retiring)."""
        why = exits.get(instance.id)
        if why is None or not instance.live or instance.failure is not None:
            return instance
        return replace(instance, failure=why)

    def _probed(self, instance: Instance) -> Instance:
        """The instance as its probes last saw it (a report lost to a failed write is not lost:
        the monitor still holds its conclusion)."""
        monitor = self.monitors.get(instance.id)
        if monitor is None or not instance.live or instance.failure is not None:
            return instance
        if monitor.failure is not None:
            return replace(instance, failure=monitor.failure, ready=False, ready_since=None)
        if monitor.started and instance.phase is InstancePhase.STARTING:
            instance = replace(instance, phase=InstancePhase.RUNNING)
        if monitor.ready != instance.ready:
            instance = replace(instance, ready=monitor.ready, ready_since=monitor.ready_since)
        return instance

    def _watch(self, status: ServiceStatus, instances: list[Instance]) -> None:
        """A probe monitor for every live instance, none for the others."""
        live = {i.id: i for i in instances if i.live and i.failure is None and i.handle is not None}
        for gone in set(self.monitors) - set(live):
            self.monitors.pop(gone).cancel()
        for iid, instance in live.items():
            if iid in self.monitors:
                continue
            spec = self.spec_of(self.revision_of(status, instance.release))
            monitor = Monitor(
                instance_id=iid,
                probes=spec.probes,
                check=functools.partial(self.prober.check, instance=instance),
                started=instance.phase is InstancePhase.RUNNING,
                ready=instance.ready,
                ready_since=instance.ready_since,
                report=self._on_probe,
                clock=self.clock,
            )
            self.monitors[iid] = monitor
            monitor.start()

    def _on_probe(self, instance_id: str, event: str, value: object) -> None:
        """A monitor concluded something: the next pass (now) stores it (see `_probed`)."""
        if event == "ready" and value is not True:
            self._post("unready", f"{instance_id}: {value}")
        self.poke()

    # --- acting ----------------------------------------------------------------------------

    async def _apply(self, table: RouteTable) -> None:
        self.must_act("applying routes")
        try:
            await self.router.apply(table)
        except DriverError as exc:
            if not self.stopping:
                raise
            log.warning("zerodown down: going on without the router: %s", exc)
        self.applied = table

    def routes_applied(self, table: RouteTable) -> bool:
        """Whether the router runs `table` (the store's): a decision is saved before its
        routes are applied (core/decide.py), so for a moment the status may call a release
        stable, or a preview ready, that the router does not route to yet; a router that
        reloads (nginx, HAProxy) takes a few hundred milliseconds, during which the old table
        answers (for a first release: 503, no backend). `zerodown up` and `deploy` wait for this."""
        applied = self.applied
        return applied is not None and applied.generation >= table.generation

    async def _converge_routes(self, table: RouteTable) -> None:
        """Apply `table` again when the router no longer runs it: a router restarted from a
        state file older than its last table (killed before it was written), or changed by
        someone else, would otherwise keep sending traffic to instances that are gone."""
        now = self.clock.now()
        if now - self._routes_verified_at < VERIFY_ROUTES_EVERY:
            return
        self._routes_verified_at = now
        if await self.router.verify(table) is False:
            self._post(
                "routes",
                f"the router ran another table; applied generation {table.generation} again",
            )
            await self._apply(table)

    async def _launch(self, status: ServiceStatus, launch: Launch) -> None:
        spec = self.spec_of(self.revision_of(status, launch.release))
        revision = str(self.revision_of(status, launch.release))
        env = {"ZERODOWN_SERVICE": self.service, "ZERODOWN_REVISION": revision}
        failure = None
        if spec.migrations is not None:
            try:
                env |= await asyncio.to_thread(self._database_env, spec, launch.release)
            except Exception as exc:
                failure = f"cannot prepare its database environment: {describe(exc)}"
        taken = {i.address for i in self.store.instances(self.service) if i.address}
        for index in range(launch.count):
            iid = instance_id(self.service, launch.release)
            # No address yet: the platform picks it. Stored first all the same (see adopt()).
            instance = Instance(
                id=iid, release=launch.release, address="", launched_at=self.clock.now()
            )
            self.store.put_instance(self.service, instance)
            if failure is None:
                self.must_act("launching")
                try:
                    placement = await self.platform.launch(
                        instance_id=iid,
                        release=launch.release,
                        run=spec.run,
                        env=env | host_env(launch, index),
                        taken=taken,
                    )
                except Exception as exc:
                    # Whatever the reason, this release cannot start this way: the instance
                    # fails with it, and so does the rollout that needs it (core/decide.py).
                    failure = describe(exc)
                    if not isinstance(exc, DriverError):
                        log.exception("launch of %s", iid)
                else:
                    taken.add(placement.address)
                    self._launched[iid] = placement
                    placed = replace(instance, address=placement.address, handle=placement.handle)
                    self.store.put_instance(self.service, placed)
                    continue
            log.warning("%s cannot start: %s", iid, failure)
            self.store.put_instance(self.service, replace(instance, failure=failure))

    def _retire(self, instance_id: str) -> None:
        current = {i.id: i for i in self.store.instances(self.service)}.get(instance_id)
        if current is None:
            return
        if current.phase is not InstancePhase.RETIRING:
            current = replace(current, phase=InstancePhase.RETIRING, ready=False)
            self.store.put_instance(self.service, current)
        self._start_retirement(current)

    def _resume_retirements(self) -> None:
        for instance in self.store.instances(self.service):
            if instance.phase is InstancePhase.RETIRING:
                self._start_retirement(instance)

    def _start_retirement(self, instance: Instance) -> None:
        if instance.id in self.retiring:
            return
        task = asyncio.create_task(self._drain_and_stop(instance), name=f"retire {instance.id}")
        self.retiring[instance.id] = task
        task.add_done_callback(lambda _t: self.retiring.pop(instance.id, None))

    async def _drain_and_stop(self, instance: Instance) -> None:
        try:
            await self._stop_instance(instance)
        except Exception as exc:
            log.warning("retiring %s: %s (trying again)", instance.id, describe(exc))
            await self.clock.sleep(RETIRE_RETRY)  # the next pass starts it again
        self.poke()

    async def _stop_instance(self, instance: Instance) -> None:
        monitor = self.monitors.pop(instance.id, None)
        if monitor is not None:
            monitor.cancel()
        status = self.store.status(self.service)
        spec = self.spec_of(self.revision_of(status, instance.release))
        instance = self._with_handle(instance)
        if instance.address:
            await self._wait_out_of_routes(instance.address)
            await self._drain(instance, spec.run.drain, spec.run.upgraded_drain)
        if instance.handle is not None:
            self.must_act("stopping an instance")
            how = await self.platform.stop(
                instance_id=instance.id,
                handle=instance.handle,
                stop_signal=spec.run.stop_signal,
                grace=spec.run.stop_timeout,
            )
            log.info("stopped %s: %s", instance.id, how)
        self.store.delete_instance(instance.id)
        self._launched.pop(instance.id, None)

    async def _wait_out_of_routes(self, address: str) -> None:
        """Never stop an instance the router may still send to (rule 2); except that
        `zerodown down`, which stops the router too, waits for it only so long."""
        started = self.clock.now()
        warned = started - 10
        while True:
            try:
                table = await self.router.table()
                if address not in table.addresses():
                    return
            except DriverError as exc:
                if self.clock.now() - warned >= 10:
                    log.warning("waiting for the router to drop %s: %s", address, exc)
                    warned = self.clock.now()
            if self.stopping and self.clock.now() - started > OUT_OF_ROUTES_ON_DOWN:
                log.warning("zerodown down: stopping %s without the router's word", address)
                return
            await self.clock.sleep(0.1)

    async def _drain(self, instance: Instance, limit: float, upgraded: float) -> None:
        """Wait for the instance's in-flight requests (at most `limit`) and its upgraded
        connections: those are kept `upgraded` seconds, then the router closes them so that
        their clients reconnect to an instance that stays."""
        address = instance.address
        assert address is not None
        start = self.clock.now()
        closer = self.router if isinstance(self.router, TunnelCloser) else None
        closed = False
        try:
            while True:
                elapsed = self.clock.now() - start
                try:
                    backend = (await self.router.backends()).get(address)
                except DriverError:
                    backend = None
                if backend is None or backend.inflight == 0:
                    return
                if backend.tunnels:
                    self.draining_tunnels[instance.id] = DrainingTunnels(
                        instance.release, address, backend.tunnels, start + upgraded
                    )
                else:
                    self.draining_tunnels.pop(instance.id, None)
                if elapsed >= upgraded and backend.tunnels and closer is not None and not closed:
                    closed = True
                    with contextlib.suppress(DriverError):
                        n = await closer.close_tunnels(address)
                        log.info("closed %d upgraded connections of %s", n, instance.id)
                # Requests get `limit`; tunnels `upgraded` (and a moment to close).
                if elapsed >= limit and (not backend.tunnels or elapsed >= upgraded + 1.0):
                    return
                await self.clock.sleep(0.05)
        finally:
            self.draining_tunnels.pop(instance.id, None)

    def _database_env(self, spec: Spec, release: str) -> dict[str, str]:
        """The release's own schema (expand-contract) and its connection tag."""
        from zerodown.migrations import api

        assert spec.migrations is not None
        url = database_url(spec.migrations.database)
        schema = api.schema_for(url, release, service=self.service)
        return {"DATABASE_URL": url, **api.app_env(self.service, release, schema)}

    def _notify(self) -> None:
        """One webhook event per phase, from the decision log (so commands count too);
        delivery is retried in the background, never waited on."""
        events = self.store.events(self.service, after=self._notified)
        if not events:
            return
        self._notified = events[-1].id
        for event in events:
            if event.revision is None:
                continue
            name = NOTIFY_EVENTS.get(event.kind)
            if name is None and event.kind == "check" and event.message.startswith("analysis"):
                name = "analysis"
            spec = self.spec_of(event.revision)
            if name is None or not spec.notify:
                continue
            notifier = self.notifiers.get(event.revision)
            if notifier is None:
                notifier = Notifier(spec.notify, service=self.service)
                self.notifiers[event.revision] = notifier
            version = self.store.revision(self.service, event.revision)
            notifier.notify(
                name,
                release=version.version if version else None,
                message=event.message,
                revision=event.revision,
            )

    def _record(self, kind: str, message: str) -> None:
        """A decision-log entry from outside a pass (a flag guard's kill)."""
        self._post(kind, message)

    async def shutdown(self) -> None:
        """Stop watching (the processes and the router keep running). Probes and retirements
        first: a controller stepping down to standby stops acting before it waits for the
        webhooks it still owes."""
        for monitor in self.monitors.values():
            monitor.cancel()
        for task in list(self.retiring.values()):
            task.cancel()
        await asyncio.gather(*self.retiring.values(), return_exceptions=True)
        if self.guards is not None:
            await self.guards.aclose()
        await self.check_tasks.aclose()
        await self.preparations.aclose()
        for notifier in self.notifiers.values():
            await notifier.drain(timeout=5)
            await notifier.aclose()
