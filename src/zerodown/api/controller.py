"""The controller: the reconcile engine over the drivers the spec names, and the operator
commands the HTTP API calls. Commands change the store through the pure core and wake the engine,
whose next pass (at once) acts on them.

The controller picks its drivers by kind through the registries (`zerodown.drivers`): the router
by `router.kind`, the platform by `platform.kind`, the state store by the scheme of `state.url`.
It imports no driver and starts no process itself: the router driver starts its router on the
engine's first pass (and any pass that finds it gone) and stops it when `zerodown down` is done.
Reads of the store raise StoreUnavailable (for the API to answer 503) instead of hanging.

The controller process (`serve`) calls `elect`: on a store with leader leases (LeaseStore) this
controller acts only while it leads (engine/leadership.py). `run` keeps the lease and runs the
reconcile loop during each term; on losing the lease it stops that engine (its probes,
retirements and checks) and keeps a fresh one for its next term; as a standby it refuses
commands (NotLeader: the API answers 503 naming the leader) and serves reads. A Controller made
in-process without `elect` (the tests' fake worlds) acts alone, as before."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from zerodown import drivers
from zerodown.core import caution, commands
from zerodown.core.errors import NotLeader, SpecError, StateError, StoreUnavailable
from zerodown.core.model import Revision, RolloutPhase, ServiceStatus
from zerodown.core.ports import LeaseStore, RouterStats
from zerodown.engine.clock import SYSTEM_CLOCK, Clock
from zerodown.engine.leadership import Leadership, Role
from zerodown.engine.reconciler import Engine
from zerodown.flags.stores.sqlite import SqliteFlagStore
from zerodown.migrations.url import database_url
from zerodown.paths import Paths
from zerodown.probes.checks import Prober
from zerodown.spec.model import Spec
from zerodown.spec.types import check_version

log = logging.getLogger("zerodown.controller")


class Controller:
    def __init__(
        self,
        paths: Paths,
        spec: Spec,
        *,
        clock: Clock = SYSTEM_CLOCK,
        prober: Prober | None = None,  # how probes reach instances; by default, for real
    ) -> None:
        self.paths = paths
        self.spec = spec  # the file as it was at start: the service name and the drivers
        self.service = spec.service
        self.clock = clock
        paths.ensure()
        made = drivers.build(drivers.DriverContext(spec=spec, paths=paths))
        self.store, self.router, self.platform = made.store, made.router, made.platform
        self.flags = SqliteFlagStore(paths.state / "flags.db")
        self._prober = prober
        self.leadership: Leadership | None = None  # set by `elect`
        self._resumes = True
        self.engine = self._new_engine()

    def _new_engine(self) -> Engine:
        return Engine(
            service=self.service,
            store=self.store,
            platform=self.platform,
            router=self.router,
            stats=self.router if isinstance(self.router, RouterStats) else None,
            spec_dir=self.paths.spec_dir,
            flags=self.flags,
            prober=self._prober,
            clock=self.clock,
            log_dir=self.paths.logs,
            must_act=self.leadership.must_act if self.leadership else lambda _what: None,
        )

    # --- leadership ------------------------------------------------------------------------

    def elect(self, url: Callable[[], str]) -> None:
        """Take part in the leader lease of the store, if it has one: a standby (writing
        nothing, refusing commands) until `claim`."""
        if not isinstance(self.store, LeaseStore):
            return
        self.leadership = Leadership(self.store, service=self.service, url=url)
        self.engine = self._new_engine()

    def claim(self) -> None:
        """The first claim, once the API listens: a controller alone on its store leads from
        its first pass."""
        if self.leadership is None:
            return
        self.leadership.tick()
        # Leading from the start, it is the controller `zerodown up` started; one that takes
        # over later as a standby must not undo a `zerodown down` the leader was carrying out.
        self._resumes = self.leadership.role is Role.LEADER

    async def run(self, on_lead: Callable[[], None] = lambda: None) -> None:
        """The reconcile loop during each term of this controller as leader (the whole life
        of the controller without leases); returns once `zerodown down` has finished."""
        leadership = self.leadership
        if leadership is None:
            self.resume_after_down()
            await self.engine.run()
            return
        renewing = asyncio.create_task(leadership.run(), name="lease")
        term: set[asyncio.Task[None]] = set()
        try:
            while True:
                await leadership.wait_for(Role.LEADER)
                if leadership.terms == 1 and self._resumes:
                    try:
                        self.resume_after_down()
                    except StoreUnavailable as exc:  # lost already, or the store is down
                        log.warning("not resumed after down: %s", exc)
                on_lead()
                engine = asyncio.create_task(self.engine.run(), name="engine")
                lost = asyncio.create_task(leadership.wait_for(Role.STANDBY), name="lost")
                term = {engine, lost}
                await asyncio.wait(term, return_when=asyncio.FIRST_COMPLETED)
                if engine.done():
                    return engine.result()
                await _cancel(term)
                await self.engine.shutdown()  # its probes, retirements and checks stop here
                log.warning("standby now: the engine of the last term is stopped")
                self.engine = self._new_engine()
        finally:
            await _cancel({renewing, *term})  # the engine too, when the controller exits

    def _commands_here(self) -> None:
        """Commands go to the leader; a standby says which one that is."""
        leadership = self.leadership
        if leadership is None or leadership.role is Role.LEADER:
            return  # its writes are fenced all the same
        leader = leadership.summary()["leader"]
        where = f"{leader['id']} ({leader['url']})" if leader else "none yet (the lease is free)"
        raise NotLeader(
            f"this controller ({leadership.me}) is a standby; the leader is {where}. "
            "Send commands to the leader"
        )

    async def aclose(self) -> None:
        """Let go of the drivers; the router and the instances keep running."""
        await self.router.aclose()
        await self.platform.aclose()
        self.store.close()
        self.flags.close()

    # --- commands --------------------------------------------------------------------------

    def resume_after_down(self) -> None:
        """A controller started after `zerodown down` brings the stable release back."""
        status = self.status()
        if status.stopping:
            back = f": starting {status.stable} again" if status.stable else ""
            self.store.save(
                dataclasses.replace(status, stopping=False),
                [(self.clock.now(), None, "up", f"zerodown up after down{back}")],
            )

    def status(self) -> ServiceStatus:
        return self.store.status(self.service)

    def deploy(
        self,
        *,
        version: str,
        spec: dict[str, Any],
        strategy: str | None,
        who: str,
        rollback: bool = False,
    ) -> dict[str, Any]:
        self._commands_here()
        try:
            check_version(version)  # the API and the CLI check too; this is the last line
        except ValueError as exc:
            raise SpecError(str(exc), field="version") from None
        now = self.clock.now()
        status = self.status()
        current = status.rollout
        if current is not None and current.active and current.version == version:
            return {"revision": current.revision, "attached": True}
        if (current is None or not current.active) and status.stable == version and not rollback:
            return {"revision": current.revision if current else None, "unchanged": True}
        spec = with_strategy(spec, strategy)
        parsed = Spec.model_validate(spec)
        if current is not None and current.active:
            self.store.end_revision(
                self.service,
                commands.replace_phase(
                    current, RolloutPhase.SUPERSEDED, now, f"superseded by {version}"
                ),
            )
        # The first release simply starts at full size.
        name = "rolling" if status.stable is None else parsed.strategy.name
        revision = self.store.add_revision(
            self.service, version=version, strategy=name, spec=spec, now=now
        )
        status = commands.start_rollout(
            status, revision=revision, version=version, strategy=name, now=now, rollback=rollback
        )
        verb = "rollback to" if rollback else "deploy"
        self.store.save(status, [(now, revision, "deploy", f"{verb} {version} ({name}) by {who}")])
        self.engine.poke()
        return {"revision": revision, "attached": False}

    def rollback(self, *, to: int | None, who: str, force: bool = False) -> dict[str, Any]:
        self._commands_here()
        status = self.status()
        if status.rollout is not None and status.rollout.active:
            self.abort(who=f"{who} (rollback)")
            return {"revision": status.rollout.revision, "aborted": True}
        revisions = self.store.revisions(self.service)
        if to is None:
            good = [
                r
                for r in revisions
                if r.outcome == RolloutPhase.COMPLETED.value and r.version != status.stable
            ]
            if not good:
                raise StateError("there is no earlier completed revision to roll back to")
            target = good[-1]
        else:
            found = next((r for r in revisions if r.number == to), None)
            if found is None:
                raise StateError(f"revision {to} does not exist; see `zerodown history`")
            target = found
            if target.version == status.stable:
                raise StateError(f"revision {to} runs {target.version}, which is already serving")
        spec = dict(target.spec)
        if not force:
            self._refuse_past_contract(Spec.model_validate(spec), target)
        strategy = Spec.model_validate(spec).strategy.name
        current = self.engine.current_spec(status)
        if current is not None and current.strategy.name == "blue_green":
            strategy = "blue_green"  # the previous environment may still be warm: one switch
        elif strategy == "canary":
            strategy = "rolling"  # a canary's steps guard a new release, not a known one
        return self.deploy(
            version=target.version, spec=spec, strategy=strategy, who=who, rollback=True
        )

    def _refuse_past_contract(self, spec: Spec, target: Revision) -> None:
        """Rule 5: a release whose database schema a completed migration dropped cannot come
        back without --force."""
        if spec.migrations is None or target.db_schema is None:
            return
        from zerodown.migrations import api

        state = api.status(database_url(spec.migrations.database))
        active = state.get("active") or {}
        alive = {
            state.get("current_schema"),
            active.get("version_schema"),
            active.get("previous_schema"),
        }
        if target.db_schema not in alive:
            raise StateError(
                f"revision {target.number} ({target.version}) used database schema "
                f"{target.db_schema}, which a completed migration (contract) has dropped; "
                "rolling back would break it. Pass --force to roll back anyway."
            )

    def _command(self, change: Any, kind: str, message: str) -> dict[str, Any]:
        self._commands_here()
        status = self.status()
        new = change(status)
        rollout = new.rollout
        self.store.save(
            new, [(self.clock.now(), rollout.revision if rollout else None, kind, message)]
        )
        self.engine.poke()
        return {"ok": True, "message": message}

    def promote(self, *, full: bool, who: str) -> dict[str, Any]:
        status = self.status()
        steps = 1
        if status.rollout is not None and status.rollout.active:
            spec = self.engine.spec_of(status.rollout.revision)
            steps = len(spec.strategy.canary.steps) if spec.strategy.canary else 1
        how = "fully " if full else ""
        return self._command(
            lambda s: commands.promote(s, full=full, steps=steps, now=self.clock.now()),
            "promote",
            f"promoted {how}by {who}",
        )

    def abort(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.abort(s, who=who, now=self.clock.now()), "abort", f"aborted by {who}"
        )

    def pause(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.pause(s, who=who, now=self.clock.now()), "pause", f"paused by {who}"
        )

    def resume(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.resume(s, now=self.clock.now()), "resume", f"resumed by {who}"
        )

    def retry(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.retry(s, now=self.clock.now()), "retry", f"retried by {who}"
        )

    def down(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: dataclasses.replace(s, stopping=True), "down", f"stopping everything ({who})"
        )


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def with_strategy(spec: dict[str, Any], strategy: str | None) -> dict[str, Any]:
    """The spec with its strategy overridden once (`zerodown deploy --strategy`)."""
    if strategy is None:
        return spec
    key = strategy.replace("-", "_")
    if key not in ("rolling", "blue_green", "canary"):
        raise SpecError(f"unknown strategy {strategy!r}; use rolling, blue-green or canary")
    current = dict(spec.get("strategy") or {})
    if key == "canary" and "canary" not in current:
        raise SpecError(
            "--strategy canary needs strategy.canary.steps in the spec", field="strategy.canary"
        )
    return {**spec, "strategy": {key: current.get(key) or {}}}


def state_summary(controller: Controller) -> dict[str, Any]:
    status = controller.status()
    instances = controller.store.instances(controller.service)
    steps: list[dict[str, Any]] = []
    spec = controller.engine.current_spec(status)
    if spec is not None and status.rollout is not None and spec.strategy.canary is not None:
        from zerodown.core.canary import describe

        steps = [
            {"n": n + 1, "step": describe(s)} for n, s in enumerate(spec.strategy.canary.steps)
        ]
    health = controller.engine.health.summary(controller.clock.now())
    leadership = controller.leadership
    standby = leadership is not None and leadership.role is Role.STANDBY
    if standby:
        health["stalled_since"] = None  # a standby runs no passes: nothing of it is stalled
    return {
        "service": controller.service,
        "router": controller.spec.router.listen,
        "status": status.to_json(),
        "routes_applied": None if standby else controller.engine.routes_applied(status.routes),
        "instances": [i.to_json() for i in instances],
        "steps": steps,
        "instances_wanted": spec.instances if spec else None,
        "events": [e.to_json() for e in controller.store.events(controller.service, limit=20)],
        "controller": health,
        "leadership": leadership.summary() if leadership else None,
        # upgraded connections (WebSockets) retiring instances still hold, closed at drain.upgraded
        "tunnels": [t.to_json() for t in controller.engine.draining_tunnels.values()],
        "now": controller.clock.now(),
        "caution": caution.summary(spec, status.rollout, strategy=status.rollout.strategy)
        if spec is not None and status.rollout is not None
        else "",
        "hosts": [h.to_json() for h in controller.engine.host_views.views],
    }


def history(controller: Controller) -> list[dict[str, Any]]:
    return [r.to_json() for r in controller.store.revisions(controller.service)]
