"""The tasks that run the checks a rollout's status holds as running (gate, migration,
compatibility, smoke tests, analysis, flag changes and their reverts); each writes its outcome
back to the store.

The status is the only list of work: every pass starts a task for each running check that has
none (so a restarted controller picks them up) and cancels the tasks whose check is no longer
running (an abort makes every analysis moot at once).

An outcome is never lost to a store that refuses a write (locked, full): the task that reached it
retries the write with a capped backoff until the store takes it (`_until_stored`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zerodown.checkers.analysis import Analyses
from zerodown.checkers.gate import run_gate
from zerodown.checkers.smoke import run_smoke
from zerodown.core import caution
from zerodown.core.analysis.context import AnalysisContext, StatsSource
from zerodown.core.analysis.model import Phase as AnalysisPhase
from zerodown.core.analysis.model import RunState
from zerodown.core.model import CheckState, Instance, Rollout, ServiceStatus
from zerodown.core.ports import StateStore
from zerodown.engine.clock import SYSTEM_CLOCK, Clock
from zerodown.flags.steps import FlagRevert, apply_with_revert, revert_flag_change, still_as_changed
from zerodown.migrations.url import database_url
from zerodown.paths import Paths
from zerodown.sessions.compat import run_compat
from zerodown.spec.analysis import AnalysisRef, ResolvedAnalysis, is_bounded, resolve
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.checks")

Outcome = tuple[CheckState, str, dict[str, Any]]


class CheckTasks:
    """One task per running check of the status, started and cancelled by `sync`."""

    def __init__(
        self,
        *,
        service: str,
        store: StateStore,
        spec_dir: Path,
        stats_source: StatsSource | None,
        flags: Any,
        spec_of_revision: Callable[[int], Spec],
        poke: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.service = service
        self.store = store
        self.spec_dir = spec_dir
        self.stats_source = stats_source
        self.flags = flags
        self.spec_of_revision = spec_of_revision
        self.poke = poke
        self.clock = clock
        self.tasks: dict[tuple[int, str], asyncio.Task[None]] = {}
        self.analyses = Analyses(on_update=self._on_analysis)

    # --- keeping tasks in step with the status ---------------------------------------------

    async def sync(self, status: ServiceStatus, instances: list[Instance]) -> None:
        rollout = status.rollout
        wanted: set[tuple[int, str]] = set()
        analyses: set[str] = set()
        if rollout is not None:
            for key, check in rollout.checks.items():
                if check.state is not CheckState.RUNNING:
                    continue
                spec = self.spec_of_revision(rollout.revision)
                if check.kind == "analysis":
                    analyses.add(self._ensure_analysis(status, rollout, key, spec))
                    continue
                wanted.add((rollout.revision, key))
                if (rollout.revision, key) not in self.tasks:
                    runner = self._runner(check.kind, status, rollout, key, spec, instances)
                    self.tasks[(rollout.revision, key)] = asyncio.create_task(
                        self._guarded(rollout.revision, key, runner), name=f"check {key}"
                    )
        for task_key in set(self.tasks) - wanted:
            self.tasks.pop(task_key).cancel()
        for run_key in set(self.analyses.keys()) - analyses:
            await self.analyses.cancel(run_key)  # moot: aborted, superseded, or finished

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.analyses.aclose()

    async def _guarded(self, revision: int, key: str, runner: Awaitable[Outcome]) -> None:
        try:
            state, reason, detail = await runner
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("check %s crashed", key)
            state, reason, detail = CheckState.FAILED, f"{type(exc).__name__}: {exc}", {}
        await _until_stored(lambda: self.finish(revision, key, state, reason, detail), key)

    def finish(
        self,
        revision: int,
        key: str,
        state: CheckState,
        reason: str,
        detail: dict[str, Any],
        *,
        attempt: float | None = None,
    ) -> None:
        """Write a check's outcome, if its rollout is still the current one and it still waits
        (and, given `attempt`, it is still the attempt that started at that time: a retry starts
        every check again)."""
        status = self.store.status(self.service)
        rollout = status.rollout
        if rollout is None or rollout.revision != revision:
            return
        check = rollout.checks.get(key)
        if check is None or check.done or attempt not in (None, check.started_at):
            return
        done = replace(
            check,
            state=state,
            reason=reason,
            finished_at=self.clock.now(),
            detail=detail or check.detail,
        )
        updated = replace(status, rollout=rollout.with_check(key, done))
        self.store.save(
            updated, [(self.clock.now(), revision, "check", f"{key}: {state.value}: {reason}")]
        )
        self.tasks.pop((revision, key), None)
        self.poke()

    # --- the checks --------------------------------------------------------------------------

    def _runner(
        self,
        kind: str,
        status: ServiceStatus,
        rollout: Rollout,
        key: str,
        spec: Spec,
        instances: list[Instance],
    ) -> Awaitable[Outcome]:
        runners: dict[str, Callable[[], Awaitable[Outcome]]] = {
            "gate": lambda: self._gate(spec),
            "migrate": lambda: self._migrate(spec, status, rollout, instances),
            "migrate-rollback": lambda: self._migrate_rollback(spec),
            "migrate-contract": lambda: self._contract_when_quiet(spec, rollout),
            "compat": lambda: self._compat(spec, status, rollout, instances),
            "smoke-pre": lambda: self._smoke(spec, self._new_url(spec, rollout, instances)),
            "smoke-post": lambda: self._smoke(spec, f"http://{spec.router.listen}"),
            "set-flag": lambda: self._set_flag(spec, rollout, key),
            "revert-flags": lambda: self._revert_flags(rollout),
        }
        if kind not in runners:
            return _done(CheckState.FAILED, f"unknown check kind {kind!r}")
        return runners[kind]()

    async def _gate(self, spec: Spec) -> Outcome:
        assert spec.gate is not None
        result = await run_gate(spec.gate, base_dir=str(self.spec_dir))
        state = CheckState.PASSED if result.passed else CheckState.FAILED
        return state, result.reason, result.to_json()

    def _new_url(self, spec: Spec, rollout: Rollout, instances: list[Instance]) -> str:
        bg = spec.strategy.blue_green
        if rollout.strategy == "blue_green" and bg is not None and bg.preview_listen:
            return f"http://{bg.preview_listen}"
        serving = [i for i in instances if i.release == rollout.version and i.serving]
        if not serving:
            raise RuntimeError(f"no instance of {rollout.version} is ready to be checked")
        return f"http://{serving[0].address}"

    def _old_url(self, status: ServiceStatus, instances: list[Instance]) -> str:
        serving = [i for i in instances if i.release == status.stable and i.serving]
        if not serving:
            raise RuntimeError(f"no instance of {status.stable} is ready to make a session")
        return f"http://{serving[0].address}"

    async def _compat(
        self, spec: Spec, status: ServiceStatus, rollout: Rollout, instances: list[Instance]
    ) -> Outcome:
        assert spec.compat is not None
        results = await run_compat(
            spec.compat,
            self._old_url(status, instances),
            self._new_url(spec, rollout, instances),
            base_dir=self.spec_dir,
        )
        failed = [r for r in results if not r.ok]
        reason = "; ".join(str(r) for r in (failed or results)) or "nothing to check"
        detail = {"results": [{"check": r.check, "ok": r.ok, "reason": r.reason} for r in results]}
        return (CheckState.FAILED if failed else CheckState.PASSED), reason, detail

    async def _smoke(self, spec: Spec, url: str) -> Outcome:
        assert spec.smoke is not None
        # the state directory depends on the spec's directory only, not on its file name
        shots = Paths.for_spec(self.spec_dir / "zerodown.yaml").screenshots
        result = await run_smoke(spec.smoke, url, cwd=str(self.spec_dir), screenshots=shots)
        state = CheckState.PASSED if result.passed else CheckState.FAILED
        reason = result.reason if not result.passed else f"{len(result.checks)} checks passed"
        return state, f"{reason} ({url})", result.to_json()

    async def _migrate(
        self, spec: Spec, status: ServiceStatus, rollout: Rollout, instances: list[Instance]
    ) -> Outcome:
        from zerodown.migrations import api
        from zerodown.migrations.risk import reasons_for

        assert spec.migrations is not None
        url = database_url(spec.migrations.database)
        directory = self.spec_dir / spec.migrations.dir
        others = {i.release for i in instances if i.live} - {status.stable}

        def expand() -> Outcome:
            notes = []
            active = api.status(url)["active"]
            if active is not None:
                if others:
                    return (
                        CheckState.FAILED,
                        f"migration {active.get('name')} is still active while "
                        f"{', '.join(sorted(others))} runs beside {status.stable}; finish with "
                        "`zerodown migrate complete` or `zerodown migrate rollback`",
                        {},
                    )
                stable_schema = (
                    api.schema_for(url, status.stable, service=self.service)
                    if status.stable
                    else None
                )
                if stable_schema == active.get("version_schema"):
                    held = _contract_held(spec, directory, str(active.get("name")))
                    if held:
                        return CheckState.FAILED, held, {}
                    # "a separate, subsequent deployment" contracts the last one
                    api.complete(url)
                    notes.append(f"completed {active.get('name')}")
                # Otherwise a rollback went back before this migration: the stable release still
                # uses the old schema, so it stays started and the new release uses it again.
            path = api.pending(url, directory)
            if path is None:
                schema = api.schema_for(url, rollout.version, service=self.service)
                return (
                    CheckState.PASSED,
                    "; ".join([*notes, "no pending migration"]),
                    {
                        "schema": schema,
                        "started": False,
                    },
                )
            schema = api.start(url, path, service=self.service, version=rollout.version)
            notes.append(f"started {path.name}: {rollout.version} uses schema {schema}")
            irreversible = reasons_for(directory, path.name)
            if irreversible:
                effects = "; ".join(caution.effects(spec, strategy=rollout.strategy))
                notes.append(f"caution raised ({'; '.join(irreversible)}): {effects}")
            return (
                CheckState.PASSED,
                "; ".join(notes),
                {
                    "schema": schema,
                    "migration": path.name,
                    "started": True,
                    caution.DETAIL_KEY: irreversible,
                },
            )

        outcome = await asyncio.to_thread(expand)
        if "schema" in outcome[2]:
            self.store.set_revision_schema(self.service, rollout.revision, outcome[2]["schema"])
        return outcome

    async def _migrate_rollback(self, spec: Spec) -> Outcome:
        from zerodown.migrations import api

        assert spec.migrations is not None
        message = await asyncio.to_thread(api.rollback, database_url(spec.migrations.database))
        return CheckState.PASSED, str(message) or "rolled back", {}

    async def _contract_when_quiet(self, spec: Spec, rollout: Rollout) -> Outcome:
        from zerodown.migrations import api

        assert spec.migrations is not None and spec.migrations.quiet_period is not None
        url, quiet = database_url(spec.migrations.database), spec.migrations.quiet_period
        old = rollout.previous
        quiet_since = time.monotonic()
        while old is not None and time.monotonic() - quiet_since < quiet:
            seen = await asyncio.to_thread(api.old_version_connections, url, self.service, old)
            if seen:
                quiet_since = time.monotonic()
            await asyncio.sleep(min(1.0, quiet))
        message = await asyncio.to_thread(api.complete, url)
        return CheckState.PASSED, f"no {old} connection for {quiet:g}s; {message}", {}

    async def _set_flag(self, spec: Spec, rollout: Rollout, key: str) -> Outcome:
        canary = spec.strategy.canary
        assert canary is not None
        step = canary.steps[int(key.rsplit("-", 1)[1]) - 1].set_flag
        assert step is not None
        flag = self.flags.get_flag(step.key)
        if flag is None:
            return CheckState.FAILED, f"flag {step.key!r} does not exist; create it first", {}
        after, revert = apply_with_revert(flag, step.change())
        actor = f"zerodown rollout r{rollout.revision}"
        self.flags.update_flag(after, actor=actor, note=f"step {key}")
        return (
            CheckState.PASSED,
            f"flag {step.key} changed",
            {"revert": revert.model_dump(mode="json")},
        )

    async def _revert_flags(self, rollout: Rollout) -> Outcome:
        notes = []
        for key, check in rollout.checks.items():
            if check.kind != "set-flag" or check.state is not CheckState.PASSED:
                continue
            revert = FlagRevert.model_validate(check.detail["revert"])
            current = self.flags.get_flag(revert.key)
            if current is None:
                notes.append(f"{revert.key}: deleted meanwhile, nothing to revert")
            elif not still_as_changed(current, revert):
                notes.append(f"{revert.key}: changed by hand since {key}, left as it is")
            else:
                actor = f"zerodown rollout r{rollout.revision}"
                self.flags.update_flag(
                    revert_flag_change(current, revert), actor=actor, note=f"revert {key}"
                )
                notes.append(f"{revert.key}: reverted")
        return CheckState.PASSED, "; ".join(notes) or "nothing to revert", {}

    # --- analysis ----------------------------------------------------------------------------

    def _ensure_analysis(
        self, status: ServiceStatus, rollout: Rollout, key: str, spec: Spec
    ) -> str:
        """Start the analysis run if it is not running (after a restart: from its stored state).
        A run is one attempt of the check: a retried rollout's check starts at another time, so
        it gets a new run instead of the finished result of the last attempt."""
        run_key = f"r{rollout.revision}/{key}/{rollout.checks[key].started_at!r}"
        ref = _analysis_ref(spec, key)
        analysis = resolve(spec.analysis, ref)
        if key.startswith("analysis:caution-"):  # a step's extra run must end by itself
            analysis = bounded(analysis)
        saved = rollout.checks[key].detail.get("state")
        ctx = AnalysisContext(
            service=self.service,
            canary=rollout.version,
            stable=status.stable,
            stats_source=self.stats_source,
        )
        self.analyses.ensure(
            run_key,
            analysis,
            ctx,
            state=RunState.from_json(saved) if saved else None,
        )
        return run_key

    async def _on_analysis(self, run_key: str, result: Any, state: RunState) -> None:
        revision, key, started_at = run_key[1:].split("/", 2)
        attempt = float(started_at)
        detail = {"result": result.to_json(), "state": state.to_json()}
        if not result.completed:
            try:
                self._progress(int(revision), key, result.reason, detail, attempt=attempt)
            except Exception as exc:  # only a progress report: the next round sends another
                log.warning("analysis %s: progress not stored: %s", key, exc)
            return
        outcome = {
            AnalysisPhase.SUCCESSFUL: CheckState.PASSED,
            AnalysisPhase.INCONCLUSIVE: CheckState.INCONCLUSIVE,
        }.get(result.phase, CheckState.FAILED)
        await _until_stored(
            lambda: self.finish(
                int(revision), key, outcome, result.reason, detail, attempt=attempt
            ),
            key,
        )

    def _progress(
        self, revision: int, key: str, reason: str, detail: dict[str, Any], *, attempt: float
    ) -> None:
        """Measurements so far, for `zerodown status`, while the analysis runs."""
        status = self.store.status(self.service)
        rollout = status.rollout
        if rollout is None or rollout.revision != revision or key not in rollout.checks:
            return
        check = rollout.checks[key]
        if check.done or check.started_at != attempt:
            return
        updated = replace(check, reason=reason, detail=detail)
        self.store.save(replace(status, rollout=rollout.with_check(key, updated)))


def _analysis_ref(spec: Spec, key: str) -> AnalysisRef:
    which = key.split(":", 1)[1]
    canary, bg = spec.strategy.canary, spec.strategy.blue_green
    ref: AnalysisRef | None = None
    if (which == "background" or which.startswith("caution-")) and canary is not None:
        ref = canary.analysis
    elif which.startswith("step-") and canary is not None:
        ref = canary.steps[int(which[5:]) - 1].analysis
    elif which == "pre" and bg is not None:
        ref = bg.pre_promotion_analysis
    elif which == "post" and bg is not None:
        ref = bg.post_promotion_analysis
    if ref is None:
        raise RuntimeError(f"the spec has no analysis for {key}")
    return ref


def _contract_held(spec: Spec, directory: Path, name: str) -> str:
    """Caution's manual gate: why the next deploy does not contract `name` by itself ("" if it
    may)."""
    from zerodown.migrations.risk import reasons_for

    reasons = reasons_for(directory, name) if spec.caution.irreversible.manual_contract else []
    if not reasons:
        return ""
    return (
        f"migration {name} is still to be contracted, and its contract cannot be undone "
        f"({'; '.join(reasons)}): caution.irreversible.manual_contract holds it for a person. "
        "Run `zerodown migrate complete` once the release is known good, then deploy again"
    )


def bounded(analysis: ResolvedAnalysis) -> ResolvedAnalysis:
    """The same metrics, each ending by itself: `count` measurements, or one when unbounded."""
    metrics = [m if is_bounded(m) else m.model_copy(update={"count": 1}) for m in analysis.metrics]
    return ResolvedAnalysis(metrics=metrics, dry_run=analysis.dry_run)


async def _done(state: CheckState, reason: str) -> Outcome:
    return state, reason, {}


async def _until_stored(write: Callable[[], None], key: str) -> None:
    """Call `write` until it succeeds (0.25 s doubling to 5 s between tries)."""
    delay = 0.25
    while True:
        try:
            write()
            return
        except Exception as exc:
            log.warning("check %s: outcome not stored yet (%s); trying again", key, exc)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
