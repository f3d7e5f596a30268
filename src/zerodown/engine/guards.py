"""Guarded flag rollouts: while a guarded flag is partly rolled out, its `on` variant is analysed
against `off`, and a failed analysis kills the flag at once and records why.

The router counts every response that names flag variants (`X-Zerodown-Flags`, added by the flag
middleware) under the pseudo-releases `flag:<key>=<variant>`, so a guard's analysis is an
ordinary analysis with `canary="flag:<key>=<on>"` and `stable="flag:<key>=<off>"`: the same
templates, providers, conditions and judges as a rollout's.

What is watched: a guard in the spec whose flag exists, is enabled, and is partly rolled out
(some contexts get it, some do not: `settled_state(flag) is None`). A flag that is off, or fully
on (no `off` population left to compare against, and its rollout is over), is not watched; a
flag that goes back to a partial rollout is watched again.

Continuous: a run that completes successfully (metrics with a `count`) is followed at once by the
next; metrics without `count` run until the guard stops. The outcome of a run:

- failed: the flag is turned off through the flag store (actor "zerodown guard", the reason as
  the audit note), and `record("guard", "<flag> killed: <reason>")`;
- inconclusive or error (too little traffic, a metric that cannot be measured): recorded (once
  per streak, not every run) and the guard keeps watching. An error does not kill: a
  measurement outage is not evidence that the feature is bad.

Each guard runs in its own task, so a kill does not wait for the engine's next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zerodown.checkers.analysis import Analyses
from zerodown.core.analysis.assess import RunResult
from zerodown.core.analysis.context import AnalysisContext, StatsSource
from zerodown.core.analysis.model import Phase
from zerodown.core.model import flag_release
from zerodown.flags.model import Flag
from zerodown.flags.stale import settled_state
from zerodown.flags.stores import FlagStore
from zerodown.metrics.base import Registry
from zerodown.spec.analysis import ResolvedAnalysis, resolve
from zerodown.spec.guards import FlagGuardSpec
from zerodown.spec.model import Spec

log = logging.getLogger(__name__)

ACTOR = "zerodown guard"
KILL_ATTEMPTS = 5  # 0.1 + 0.2 + 0.4 + 0.8 s between them: a store blip does not save a bad flag


def guarded(flag: Flag | None) -> bool:
    """Whether a guard watches this flag now: it exists, is on, and is partly rolled out."""
    return flag is not None and flag.enabled and settled_state(flag) is None


def run_key(flag: str) -> str:
    return f"guard/{flag}"


@dataclass
class _Guard:
    spec: FlagGuardSpec
    analysis: ResolvedAnalysis
    task: asyncio.Task[None] | None = None
    runs: int = 0
    killing: bool = False  # the kill is under way: let it finish and record
    last_result: RunResult | None = None
    analyses: Analyses | None = field(default=None, repr=False)


class FlagGuards:
    """The flag guards of one service; the engine calls `sync(spec)` on every reconcile pass."""

    def __init__(
        self,
        *,
        service: str,
        flags: FlagStore,
        stats_source: StatsSource | None,
        record: Callable[[str, str], None],
        registry: Registry | None = None,
    ) -> None:
        self.service = service
        self.flags = flags
        self.stats_source = stats_source
        self.record = record
        self.registry = registry
        self._guards: dict[str, _Guard] = {}
        self._missing: set[str] = set()  # guards whose flag does not exist (logged once)

    # --- the engine's side ---------------------------------------------------------------------

    async def sync(self, spec: Spec) -> None:
        """Start a guard for each guarded flag that is partly rolled out; stop the others."""
        wanted: dict[str, tuple[FlagGuardSpec, ResolvedAnalysis]] = {}
        for guard in spec.flag_guards:
            try:
                wanted[guard.flag] = (guard, resolve(spec.analysis, guard.analysis))
            except ValueError as exc:  # the spec loader checks this; a stored spec might not
                log.warning("flag guard %s: %s", guard.flag, exc)
        try:
            flags = await self._read_flags(list(wanted)) if wanted else {}
        except Exception as exc:  # the store is down: keep the guards as they are, try again
            log.warning("flag guards: cannot read the flags: %s", exc)
            return
        for key, current in list(self._guards.items()):
            entry = wanted.get(key)
            flag = flags.get(key)
            if entry is None:
                await self._stop(key, "guard removed from the spec")
            elif flag is None:
                await self._stop(key, "flag deleted")
            elif not guarded(flag):
                await self._stop(key, "flag off" if not flag.enabled else "flag fully on")
            elif entry != (current.spec, current.analysis):
                await self._stop(key, "guard or its templates changed")
        for key, (guard, analysis) in wanted.items():
            flag = flags.get(key)
            if flag is None:
                if key not in self._missing:
                    self._missing.add(key)
                    log.warning("flag guard %s: no such flag", key)
                continue
            self._missing.discard(key)
            if key not in self._guards and guarded(flag):
                self._start(guard, analysis)

    def watching(self) -> list[str]:
        """The flags being guarded now."""
        return sorted(k for k, g in self._guards.items() if g.task and not g.task.done())

    def status(self) -> dict[str, dict[str, Any]]:
        """Per guarded flag: runs so far, the current run's phase and reason (status, dashboard)."""
        out: dict[str, dict[str, Any]] = {}
        for key, guard in sorted(self._guards.items()):
            current = self.result(key)
            out[key] = {
                "canary": flag_release(key, guard.spec.on),
                "baseline": flag_release(key, guard.spec.off),
                "runs": guard.runs,
                "result": None if current is None else current.to_json(),
                "last_completed": None
                if guard.last_result is None
                else {"phase": guard.last_result.phase.value, "reason": guard.last_result.reason},
            }
        return out

    def result(self, flag: str) -> RunResult | None:
        """The latest result of the flag's current run (for status and the dashboard)."""
        guard = self._guards.get(flag)
        if guard is None or guard.analyses is None:
            return None
        return guard.analyses.result(run_key(flag))

    async def aclose(self) -> None:
        for key in list(self._guards):
            await self._stop(key, None)

    # --- one guard -----------------------------------------------------------------------------

    def _start(self, spec: FlagGuardSpec, analysis: ResolvedAnalysis) -> None:
        guard = _Guard(spec, analysis)
        self._guards[spec.flag] = guard
        guard.task = asyncio.get_running_loop().create_task(
            self._watch(guard), name=f"flag guard {spec.flag}"
        )
        self._say(
            f"{spec.flag}: guarding {flag_release(spec.flag, spec.on)} against "
            f"{flag_release(spec.flag, spec.off)} ({', '.join(spec.analysis.templates)})",
        )

    async def _stop(self, key: str, why: str | None) -> None:
        guard = self._guards.pop(key, None)
        if guard is None:
            return
        task = guard.task
        if task is not None and guard.killing:
            await asyncio.wait([task])  # the flag is off already; the kill is being recorded
            return
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if why is not None:
                self._say(f"{key}: stopped guarding ({why})")

    async def _watch(self, guard: _Guard) -> None:
        spec = guard.spec
        key = spec.flag
        ctx = AnalysisContext(
            service=self.service,
            canary=flag_release(key, spec.on),
            stable=flag_release(key, spec.off),
            stats_source=self.stats_source,
        )
        try:
            while True:
                result = await self._one_run(guard, ctx)
                if result.phase is Phase.FAILED:
                    guard.killing = True
                    await self._kill(key, result.reason)
                    return
                if result.phase in (Phase.INCONCLUSIVE, Phase.ERROR):
                    last = guard.last_result
                    if last is None or last.phase is not result.phase:
                        self._say(f"{key}: {result.phase.value}, still watching: {result.reason}")
                guard.last_result = result
                if result.phase is not Phase.SUCCESSFUL:
                    # Not a tight loop when nothing can be measured (an error right away).
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so in the decision log rather than die silently
            log.exception("flag guard %s crashed", key)
            self._say(f"{key}: guard stopped by an error: {type(exc).__name__}: {exc}")
        finally:
            if self._guards.get(key) is guard:
                del self._guards[key]

    async def _one_run(self, guard: _Guard, ctx: AnalysisContext) -> RunResult:
        """One analysis run under `guard/<flag>`; returns its final result."""
        done: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()

        def on_update(_key: str, result: RunResult, _state: Any) -> None:
            if result.completed and not done.done():
                done.set_result(result)

        analyses = Analyses(on_update=on_update, registry=self.registry)
        guard.analyses = analyses
        guard.runs += 1
        try:
            analyses.ensure(run_key(guard.spec.flag), guard.analysis, ctx)
            return await done
        finally:
            await analyses.aclose()

    async def _kill(self, key: str, reason: str) -> None:
        """Turn the flag off through the store (retried a few times if the store fails)."""
        note = f"guard: {reason}"

        def kill() -> bool:
            flag = self.flags.get_flag(key)
            if flag is None or not flag.enabled:
                return False
            self.flags.update_flag(
                flag.model_copy(update={"enabled": False}), actor=ACTOR, note=note
            )
            return True

        started = time.monotonic()
        for attempt in range(KILL_ATTEMPTS):
            try:
                killed = await asyncio.to_thread(kill)
                break
            except Exception as exc:
                log.warning("flag %s: kill attempt %d failed: %s", key, attempt + 1, exc)
                if attempt + 1 == KILL_ATTEMPTS:
                    self._say(
                        f"{key}: analysis failed but the flag could not be turned off "
                        f"({type(exc).__name__}: {exc}); turn it off by hand: {reason}"
                    )
                    return
                await asyncio.sleep(0.1 * 2**attempt)
        if killed:
            log.warning("flag %s killed in %.3f s: %s", key, time.monotonic() - started, reason)
            self._say(f"{key} killed: {reason}")
        else:
            self._say(f"{key}: analysis failed but the flag was already off: {reason}")

    def _say(self, message: str) -> None:
        """A decision-log entry; a failing log must not stop a guard."""
        try:
            self.record("guard", message)
        except Exception:
            log.exception("flag guards: cannot record %r", message)

    async def _read_flags(self, keys: list[str]) -> dict[str, Flag]:
        def read() -> dict[str, Flag]:
            found: dict[str, Flag] = {}
            for key in keys:
                flag = self.flags.get_flag(key)
                if flag is not None:
                    found[key] = flag
            return found

        return await asyncio.to_thread(read)
