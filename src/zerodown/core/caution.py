"""Caution that follows risk: what a rollout does differently when the migration it started
cannot be undone once contracted (spec `caution.irreversible`, zerodown.spec.caution).

The engine's migration check writes the reasons into its detail (`irreversible`, a list of
sentences from zerodown.migrations.risk); everything here reads them from the rollout, so a
restarted controller is exactly as careful as before. Pure: no I/O, no clock.
"""

from __future__ import annotations

from zerodown.core.model import CheckState, Rollout
from zerodown.spec.model import CanaryStep, Spec
from zerodown.spec.types import format_duration

DETAIL_KEY = "irreversible"
"""Where the migration check's detail lists why its contract cannot be undone."""


def reasons(rollout: Rollout | None) -> tuple[str, ...]:
    """Why this rollout is riskier than usual: empty when it is not."""
    migrate = rollout.checks.get("migrate") if rollout is not None else None
    if migrate is None or migrate.state is not CheckState.PASSED:
        return ()
    return tuple(str(r) for r in migrate.detail.get(DETAIL_KEY) or ())


def raised(rollout: Rollout | None) -> bool:
    return bool(reasons(rollout)) and not (rollout is not None and rollout.rollback)


def pause_seconds(spec: Spec, rollout: Rollout | None, duration: float) -> float:
    """A canary's timed pause, lengthened by `pause_factor` while caution is raised."""
    if not raised(rollout):
        return duration
    return duration * spec.caution.irreversible.pause_factor


def analysis_key(index: int) -> str:
    """The check that runs the background analysis once more after step `index` (0-based)."""
    return f"analysis:caution-{index + 1}"


def analysis_after(spec: Spec, rollout: Rollout | None, step: CanaryStep) -> bool:
    """Whether a weight step must also pass a bounded run of the background analysis."""
    canary = spec.strategy.canary
    return (
        raised(rollout)
        and spec.caution.irreversible.analysis_every_step
        and canary is not None
        and canary.analysis is not None
        and step.set_weight is not None
        and step.set_weight > 0
    )


def effects(spec: Spec, *, strategy: str) -> list[str]:
    """What raised caution changes, in words, for `plan`, `status` and the decision log."""
    care = spec.caution.irreversible
    out = []
    if care.manual_contract:
        out.append("the contract waits for `zerodown migrate complete`")
    canary = spec.strategy.canary
    if strategy == "canary" and canary is not None:
        if care.pause_factor != 1 and any(s.pause and s.pause.duration for s in canary.steps):
            out.append(f"timed pauses {care.pause_factor:g} times as long")
        if care.analysis_every_step and canary.analysis is not None:
            out.append("the background analysis must pass after every weight")
        elif care.analysis_every_step:
            out.append("no background analysis to run after every weight (none configured)")
    return out


def summary(spec: Spec, rollout: Rollout | None, *, strategy: str) -> str:
    """One line: "caution raised (…reasons…): …effects…"; "" when caution is not raised."""
    why = reasons(rollout)
    if not why or (rollout is not None and rollout.rollback):
        return ""
    done = "; ".join(effects(spec, strategy=strategy)) or "nothing configured changes"
    return f"caution raised ({'; '.join(why)}): {done}"


def describe_pause(spec: Spec, rollout: Rollout | None, duration: float) -> str:
    longer = pause_seconds(spec, rollout, duration)
    if longer == duration:
        return f"pause {format_duration(duration)}"
    factor = spec.caution.irreversible.pause_factor
    return f"pause {format_duration(longer)} ({format_duration(duration)} x{factor:g}: caution)"
