"""The controller process: the reconcile engine, the router it supervises, and the operator
commands the HTTP API calls. Commands change the store through the pure core and wake the engine,
whose next pass (at once) acts on them.

The router is started by the engine's first pass (before anything else) and by any pass that
finds it gone; it is stopped only by `zerodown down`, once the engine has stopped every instance.
A router process that runs but cannot be reached on its admin socket is reported, never doubled.
Reads of the store raise StoreUnavailable (for the API to answer 503) instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from zerodown.core import commands
from zerodown.core.errors import SpecError, StateError, TransientDriverError
from zerodown.core.model import RolloutPhase, ServiceStatus
from zerodown.engine.reconciler import Engine, checked_version
from zerodown.flags.stores.sqlite import SqliteFlagStore
from zerodown.paths import Paths
from zerodown.platforms.local import LocalPlatform, proc_start_ticks
from zerodown.routers.proxy.client import ProxyRouter, router_command
from zerodown.spec.model import Spec
from zerodown.core.model import Revision
from zerodown.store.sqlite import SqliteStore

log = logging.getLogger("zerodown.controller")


class Controller:
    def __init__(self, paths: Paths, spec: Spec) -> None:
        self.paths = paths
        self.spec = spec  # the file as it was at start: the service name and the router's addresses
        self.service = spec.service
        paths.ensure()
        self.store = SqliteStore(paths.store)
        self.flags = SqliteFlagStore(paths.state / "flags.db")
        self.router = ProxyRouter(str(paths.router_socket))
        self.platform = LocalPlatform(state_dir=paths.state, spec_dir=paths.spec_dir)
        self.engine = Engine(
            service=self.service,
            store=self.store,
            platform=self.platform,
            router=self.router,
            spec_dir=paths.spec_dir,
            ensure_router=self.ensure_router,
            flags=self.flags,
        )
        self._router_checked = 0.0

    # --- the router process ----------------------------------------------------------------

    async def ensure_router(self) -> None:
        """Start the router if it is not running; it restores its last table by itself."""
        now = time.monotonic()
        if now - self._router_checked < 1.0:
            return
        # The socket file too: our pooled connection may outlive it, a new client could not.
        if self.paths.router_socket.is_socket() and await self.router.healthy():
            self._router_checked = now
            return
        running = self._router_pid()
        if running is not None:
            raise TransientDriverError(
                f"the router (pid {running}) runs but cannot be reached on its admin socket "
                f"{self.paths.router_socket}; traffic still flows through it. If this lasts, "
                "stop that process: the next pass starts a new router"
            )
        preview = (
            self.spec.strategy.blue_green.preview_listen if self.spec.strategy.blue_green else None
        )
        argv = router_command(
            listen=self.spec.router.listen,
            preview_listen=preview,
            admin_socket=str(self.paths.router_socket),
            state_file=str(self.paths.router_state),
            admin_listen=self.spec.router.admin_listen,
            admin_token_file=str(self.paths.token_file) if self.spec.router.admin_listen else None,
            # TODO: header_timeout=self.spec.router.header_timeout, once router_command takes it
        )
        with open(self.paths.logs / "router.log", "ab") as out:
            written_before = out.tell()  # what this start writes is what explains a failure
            child = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.paths.router_pid.write_text(str(child.pid))
        for _ in range(100):
            if await self.router.healthy():
                self._router_checked = time.monotonic()
                log.info("router started (pid %s) on %s", child.pid, self.spec.router.listen)
                return
            if child.poll() is not None:
                break
            await asyncio.sleep(0.05)
        with open(self.paths.logs / "router.log", "rb") as written:
            written.seek(written_before)
            tail = written.read(4096).decode(errors="replace").strip().splitlines()[-3:]
        raise SpecError(
            f"the router did not start on {self.spec.router.listen}: {' | '.join(tail)}",
            field="router.listen",
        )

    def _router_pid(self) -> int | None:
        """The pid of our router process if it runs (a recycled pid is not mistaken for it)."""
        try:
            pid = int(self.paths.router_pid.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = str(self.paths.router_socket).encode() in cmdline
        return pid if ours and proc_start_ticks(pid) is not None else None

    async def stop_router(self, grace: float = 10.0) -> None:
        """SIGTERM, time for in-flight requests to finish, then SIGKILL."""
        pid = self._router_pid()
        if pid is None:
            self.paths.router_pid.unlink(missing_ok=True)
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + grace
        killed = False
        while proc_start_ticks(pid) is not None:
            if time.monotonic() > deadline + 10:
                log.warning("the router (pid %s) is still there after SIGKILL", pid)
                return
            if time.monotonic() > deadline and not killed:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.05)
        self.paths.router_pid.unlink(missing_ok=True)

    # --- commands --------------------------------------------------------------------------

    def resume_after_down(self) -> None:
        """A controller started after `zerodown down` brings the stable release back."""
        status = self.status()
        if status.stopping:
            back = f": starting {status.stable} again" if status.stable else ""
            self.store.save(
                dataclasses.replace(status, stopping=False),
                [(time.time(), None, "up", f"zerodown up after down{back}")],
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
        try:
            checked_version(version)  # the API and the CLI check too; this is the last line
        except ValueError as exc:
            raise SpecError(str(exc), field="version") from None
        now = time.time()
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
        from zerodown.engine.pipeline import database_url
        from zerodown.migrations import api

        state = api.status(database_url(spec))
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
        status = self.status()
        new = change(status)
        rollout = new.rollout
        self.store.save(new, [(time.time(), rollout.revision if rollout else None, kind, message)])
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
            lambda s: commands.promote(s, full=full, steps=steps, now=time.time()),
            "promote",
            f"promoted {how}by {who}",
        )

    def abort(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.abort(s, who=who, now=time.time()), "abort", f"aborted by {who}"
        )

    def pause(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.pause(s, who=who, now=time.time()), "pause", f"paused by {who}"
        )

    def resume(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.resume(s, now=time.time()), "resume", f"resumed by {who}"
        )

    def retry(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: commands.retry(s, now=time.time()), "retry", f"retried by {who}"
        )

    def down(self, *, who: str) -> dict[str, Any]:
        return self._command(
            lambda s: dataclasses.replace(s, stopping=True), "down", f"stopping everything ({who})"
        )


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
    return {
        "service": controller.service,
        "router": controller.spec.router.listen,
        "status": status.to_json(),
        "instances": [i.to_json() for i in instances],
        "steps": steps,
        "instances_wanted": spec.instances if spec else None,
        "events": [e.to_json() for e in controller.store.events(controller.service, limit=20)],
        "controller": controller.engine.health.summary(time.time()),
        "now": time.time(),
    }


def history(controller: Controller) -> list[dict[str, Any]]:
    return [r.to_json() for r in controller.store.revisions(controller.service)]
