"""The reconcile loop: observe, `decide`, persist, act. One per service.

Every pass reads the store, so the loop holds nothing in memory that matters: a controller killed
at any moment and restarted resumes from the store, adopts the processes it launched, and reaches
the same decisions. The order inside a pass keeps the rules of the rollout:

1. the decision and its records are persisted before anything is acted on;
2. routes are applied (atomically, by the router) before any instance leaves them;
3. an instance drains and stops only once the router confirms it is out of the table;
4. a launch is written to the store before the process starts, then adopted if we crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zerodown.core.decide import decide
from zerodown.core.errors import DriverError, PermanentDriverError
from zerodown.core.model import (
    ApplyRoutes,
    Instance,
    InstancePhase,
    Launch,
    Record,
    Retire,
    RolloutPhase,
    ServiceStatus,
)
from zerodown.core.routes import RouteTable
from zerodown.engine.guards import FlagGuards
from zerodown.engine.health import Monitor
from zerodown.engine.pipeline import Pipeline, database_url
from zerodown.pipeline.notify import Notifier
from zerodown.platforms.local import LocalPlatform, Process, free_port
from zerodown.routers.proxy.client import ProxyRouter
from zerodown.spec.model import Spec
from zerodown.store.sqlite import SqliteStore

log = logging.getLogger("zerodown.engine")

PASS_INTERVAL = 0.25  # seconds between passes when nothing wakes the loop

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


class Engine:
    def __init__(
        self,
        *,
        service: str,
        store: SqliteStore,
        platform: LocalPlatform,
        router: ProxyRouter,
        spec_dir: Path,
        ensure_router: Callable[[], Awaitable[None]] | None = None,
        flags: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store = store
        self.platform = platform
        self.router = router
        self.spec_dir = spec_dir
        self.ensure_router = ensure_router
        self.clock = clock
        self.wake = asyncio.Event()
        self.monitors: dict[str, Monitor] = {}
        self.retiring: dict[str, asyncio.Task[None]] = {}
        self.applied: RouteTable | None = None
        self._specs: dict[int, Spec] = {}
        self.stopped = asyncio.Event()
        self.pipeline = Pipeline(
            service=service,
            store=store,
            spec_dir=spec_dir,
            stats_source=router,
            flags=flags,
            spec_of_revision=self.spec_of,
            poke=self.poke,
        )
        self.guards = (
            FlagGuards(service=service, flags=flags, stats_source=router, record=self._record)
            if flags is not None
            else None
        )
        self.notifiers: dict[int, Notifier] = {}
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
        self.adopt()
        while not self.stopped.is_set():
            try:
                done = await self.reconcile()
            except DriverError as exc:
                log.warning("reconcile pass: %s", exc)
                done = False
            if done:
                self.stopped.set()
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), PASS_INTERVAL)
            self.wake.clear()

    def poke(self) -> None:
        self.wake.set()

    def adopt(self) -> None:
        """Match the store's instances with running processes; record pids we never saw."""
        found = self.platform.adoptable()
        for instance in self.store.instances(self.service):
            process = found.get(instance.id)
            if process is not None and instance.pid != process.pid:
                self.store.put_instance(self.service, replace(instance, pid=process.pid))

    async def reconcile(self) -> bool:
        """One pass. True when `zerodown down` has finished."""
        if self.ensure_router is not None:
            await self.ensure_router()
        # From reading the store to saving the decision, nothing awaits: the API's commands
        # run on this same event loop, so none can slip in between and be overwritten.
        now = self.clock()
        status = self.store.status(self.service)
        instances = self._observe(self.store.instances(self.service))
        spec = self.current_spec(status)
        if spec is None:
            return False
        self._watch(status, instances)
        decision = decide(spec, status, instances, now)
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
        await self.pipeline.sync(decision.status, instances)
        if self.guards is not None:
            await self.guards.sync(spec)
        self._notify()
        if self.applied is None or self.applied.generation != decision.status.routes.generation:
            await self._apply(decision.status.routes)
        return decision.status.stopping and not any(
            i.phase is not InstancePhase.STOPPED for i in self.store.instances(self.service)
        )

    # --- observing -------------------------------------------------------------------------

    def _observe(self, instances: list[Instance]) -> list[Instance]:
        """Processes that exited become failed instances (or stopped, if they were retiring)."""
        seen = []
        for instance in instances:
            if (
                instance.live
                and instance.pid is not None
                and instance.failure is None
                and not self.platform.alive(Process(instance.pid, 0))
            ):
                code = self.platform.exit_code(instance.pid)
                tail = self.platform.log_tail(instance.id)
                why = f"process exited ({code if code is not None else 'unknown'} status)"
                instance = replace(instance, failure=why + (f": {tail}" if tail else ""))
                self.store.put_instance(self.service, instance)
            seen.append(instance)
        return seen

    def _watch(self, status: ServiceStatus, instances: list[Instance]) -> None:
        """A probe monitor for every live instance, none for the others."""
        live = {i.id: i for i in instances if i.live and i.failure is None and i.pid is not None}
        for gone in set(self.monitors) - set(live):
            self.monitors.pop(gone).cancel()
        for iid, instance in live.items():
            if iid in self.monitors:
                continue
            spec = self.spec_of(self.revision_of(status, instance.release))
            monitor = Monitor(
                instance_id=iid,
                address=instance.address,
                probes=spec.probes,
                cwd=(self.spec_dir / spec.run.workdir).resolve(),
                env=dict(os.environ),
                started=instance.phase is InstancePhase.RUNNING,
                ready=instance.ready,
                report=self._on_probe,
            )
            self.monitors[iid] = monitor
            monitor.start()

    def _on_probe(self, instance_id: str, event: str, value: object) -> None:
        current = {i.id: i for i in self.store.instances(self.service)}.get(instance_id)
        if current is None or not current.live:
            return
        now = self.clock()
        if event == "started":
            current = replace(current, phase=InstancePhase.RUNNING)
        elif event == "ready" and value is True:
            current = replace(current, ready=True, ready_since=now)
        elif event == "ready":
            current = replace(current, ready=False, ready_since=None)
            self.store.save(
                self.store.status(self.service), [(now, None, "unready", f"{instance_id}: {value}")]
            )
        elif event == "failed":
            current = replace(current, failure=str(value), ready=False)
        self.store.put_instance(self.service, current)
        self.poke()

    # --- acting ----------------------------------------------------------------------------

    async def _apply(self, table: RouteTable) -> None:
        await self.router.apply(table)
        self.applied = table

    async def _launch(self, status: ServiceStatus, launch: Launch) -> None:
        spec = self.spec_of(self.revision_of(status, launch.release))
        env = {"ZERODOWN_SERVICE": self.service}
        if spec.migrations is not None:
            env |= await asyncio.to_thread(self._database_env, spec, launch.release)
        taken = {int(i.address.rsplit(":", 1)[1]) for i in self.store.instances(self.service)}
        for _ in range(launch.count):
            iid = f"{self.service}-{launch.release}-{uuid.uuid4().hex[:6]}"
            port = free_port(taken)
            taken.add(port)
            instance = Instance(
                id=iid,
                release=launch.release,
                address=f"127.0.0.1:{port}",
                launched_at=self.clock(),
            )
            self.store.put_instance(self.service, instance)  # before the process: see adopt()
            try:
                process = self.platform.launch(
                    instance_id=iid,
                    version=launch.release,
                    port=port,
                    run=spec.run,
                    extra_env=env,
                )
            except PermanentDriverError as exc:
                self.store.put_instance(self.service, replace(instance, failure=str(exc)))
                continue
            self.store.put_instance(self.service, replace(instance, pid=process.pid))

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
        monitor = self.monitors.pop(instance.id, None)
        if monitor is not None:
            monitor.cancel()
        status = self.store.status(self.service)
        spec = self.spec_of(self.revision_of(status, instance.release))
        await self._wait_out_of_routes(instance.address)
        await self._drain(instance.address, spec.run.drain)
        if instance.pid is not None:
            how = await self.platform.stop(
                Process(instance.pid, 0),
                stop_signal=spec.run.stop_signal,
                grace=spec.run.stop_timeout,
            )
            log.info("stopped %s: %s", instance.id, how)
        self.store.delete_instance(instance.id)
        self.poke()

    async def _wait_out_of_routes(self, address: str) -> None:
        """Never stop an instance the router may still send to (rule 2)."""
        while True:
            try:
                table = await self.router.table()
                if address not in table.addresses():
                    return
            except DriverError as exc:
                log.warning("waiting for the router to drop %s: %s", address, exc)
            await asyncio.sleep(0.1)

    async def _drain(self, address: str, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            try:
                backend = (await self.router.backends()).get(address)
            except DriverError:
                backend = None
            if backend is None or backend.inflight == 0:
                return
            await asyncio.sleep(0.05)

    def _database_env(self, spec: Spec, release: str) -> dict[str, str]:
        """The release's own schema (expand-contract) and its connection tag."""
        from zerodown.migrations import api

        url = database_url(spec)
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
        self.store.save(self.store.status(self.service), [(self.clock(), None, kind, message)])
        log.info("%s: %s", kind, message)

    async def shutdown(self) -> None:
        """Stop watching (the processes and the router keep running)."""
        if self.guards is not None:
            await self.guards.aclose()
        await self.pipeline.aclose()
        for notifier in self.notifiers.values():
            await notifier.drain(timeout=5)
            await notifier.aclose()
        for monitor in self.monitors.values():
            monitor.cancel()
        for task in list(self.retiring.values()):
            task.cancel()
        await asyncio.gather(*self.retiring.values(), return_exceptions=True)
