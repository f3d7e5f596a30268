"""The rollback plan of a deploy, computed from the spec alone: the article's four questions.

- what triggers a rollback: every analysis metric (condition, interval, count, limits), the
  probes, the progress deadline, the smoke checks after promotion, the flag guards;
- who can start it: whoever holds the admin token (CLI, API, dashboard), and the triggers;
- how it is carried out: a route change only, or instances to launch; migrations crossed;
- how long it takes: the worst case from a regression to traffic back on the stable release.

Pure: the caller gives what it read (the stable release, the migration outlook); nothing here
reads a file, a clock or a socket.

The worst case of one analysis metric, from the moment a regression starts to the moment its
traffic is back on the stable release, is

    detect  = max(first_wait, interval) + failure_limit x interval + measure
    worst   = detect + RECONCILE_PASS + ROUTE_APPLY [+ relaunch]

- `max(first_wait, interval)`: a measurement summarises the interval that just ended, so a
  regression that starts right after one is seen at the next, one `interval` later (or, if it is
  there from the start, at the first measurement, `initial_delay` in);
- `failure_limit x interval`: the metric fails after failure_limit + 1 failed measurements;
- `measure`: the provider's `timeout` for Prometheus, web and command metrics (a query may take
  that long); 0 for the router provider, which reads the router's samples in memory;
- RECONCILE_PASS: a finished check wakes the controller's loop, which decides in one pass (the
  loop never sleeps longer than this between passes, engine.reconciler.PASS_INTERVAL);
- ROUTE_APPLY: the router's atomic table swap (measured 0.05 s from command to all traffic on
  the old release, docs/benchmarks.md; this budget is twice that);
- relaunch: only where the stable release no longer runs at full size (rolling; blue-green after
  `scale_down_delay`): its instances start again, which costs the app's own start time plus the
  readiness probe (`initial_delay + period x success_threshold`) per batch of `max_surge`.

It assumes the regression shows in the metric at once: with the router provider's default window
(since the analysis started), clean traffic before the regression dilutes it and detection is
later; `window:` bounds that. A metric with a `count` stops watching after its last measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from zerodown.core import caution
from zerodown.core.canary import describe
from zerodown.spec.analysis import MetricSpec, first_wait, resolve
from zerodown.spec.model import CanaryStep, ProbeSpec, Spec
from zerodown.spec.types import format_duration, resolve_count

RECONCILE_PASS = 0.25
"""Seconds: the longest the controller's loop waits between passes (PASS_INTERVAL)."""
ROUTE_APPLY = 0.1
"""Seconds: the budget for the router to swap its route table (measured 0.05 s)."""
UNKNOWN_STABLE = "the stable release"


@dataclass(frozen=True)
class MigrationOutlook:
    """What the caller knows of the migrations a deploy would touch (no database is read)."""

    to_contract: str | None = None  # the started migration the deploy completes first
    contract_reasons: tuple[str, ...] = ()  # why that contract cannot be undone
    to_start: str | None = None  # the pending migration the deploy starts (expand)
    start_reasons: tuple[str, ...] = ()  # why its later contract cannot be undone
    older_schemas: tuple[int, ...] = ()  # revisions on a schema the contract drops
    source: str = "the migration files"


@dataclass(frozen=True)
class Trigger:
    kind: str  # analysis | probe | progress-deadline | smoke | flag-guard | person
    name: str
    watches: str  # when in the rollout it watches
    condition: str
    effect: str
    settings: dict[str, Any] = field(default_factory=dict)
    detect: float | None = None  # seconds from a regression to the trigger firing
    formula: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackPlan:
    service: str
    version: str | None
    stable: str | None
    strategy: str
    instances: int
    steps: list[str]
    triggers: list[Trigger]
    worst_case: float | None  # seconds from a regression to traffic back on stable
    worst_case_via: str
    worst_case_formula: str
    who: list[str]
    how: str
    relaunch: int  # instances of the stable release to start again on a rollback
    migrations: list[str]
    blockers: list[str]
    caution: list[str]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["triggers"] = [t.to_json() for t in self.triggers]
        return doc


def compute(
    spec: Spec,
    *,
    version: str | None = None,
    stable: str | None = None,
    migrations: MigrationOutlook | None = None,
    strategy: str | None = None,
    first: bool = False,
) -> RollbackPlan:
    """The rollback plan of deploying `version` over `stable` with `spec`. `stable` None: not
    known (it is called "the stable release"), or, with `first`, there is none yet."""
    name = strategy or spec.strategy.name
    outlook = migrations or MigrationOutlook()
    risky = bool(outlook.start_reasons)
    triggers = [*_analysis_triggers(spec, name, risky), *_other_triggers(spec, name)]
    relaunch, how, back = _how(spec, name, None if first else stable or UNKNOWN_STABLE)
    fastest = _fastest(triggers)
    worst = None if fastest is None or fastest.detect is None else fastest.detect + back
    formula = ""
    if fastest is not None:
        formula = f"{fastest.formula} + {format_duration(RECONCILE_PASS)} reconcile pass"
        formula += f" + {format_duration(ROUTE_APPLY)} route apply"
        if relaunch:
            formula += f" + {format_duration(back - RECONCILE_PASS - ROUTE_APPLY)} relaunch"
    return RollbackPlan(
        service=spec.service,
        version=version,
        stable=stable,
        strategy=name,
        instances=spec.instances,
        steps=_steps(spec, name, outlook),
        triggers=triggers,
        worst_case=worst,
        worst_case_via=fastest.name if fastest is not None else "",
        worst_case_formula=formula,
        who=_who(spec, triggers),
        how=how,
        relaunch=relaunch,
        migrations=_migrations(outlook, has_migrations=spec.migrations is not None),
        blockers=_blockers(spec, outlook),
        caution=_caution(spec, name, outlook),
        notes=_notes(stable, first, triggers),
    )


# --- the rollout ------------------------------------------------------------------------------


def _steps(spec: Spec, strategy: str, outlook: MigrationOutlook) -> list[str]:
    risky = bool(outlook.start_reasons)
    steps = ["gate: " + " ".join(spec.gate.command)] if spec.gate else []
    if spec.migrations is not None:
        steps += [f"migrate: contract {outlook.to_contract}"] if outlook.to_contract else []
        start = outlook.to_start or "the next pending migration, if any"
        steps.append(f"migrate: start {start} (expand)")
    steps += ["smoke checks against the new release"] if spec.smoke else []
    if strategy == "canary" and spec.strategy.canary is not None:
        steps += [_canary_step(spec, s, risky) for s in spec.strategy.canary.steps]
    elif strategy == "blue_green":
        bg = spec.strategy.blue_green
        steps.append(f"start {spec.instances} instances of the new release beside the old")
        if bg is not None and bg.preview_listen:
            steps.append(f"preview on {bg.preview_listen}")
        if bg is not None and bg.pre_promotion_analysis:
            steps.append("pre-promotion analysis " + ", ".join(bg.pre_promotion_analysis.templates))
        steps.append(_switch(spec))
        if bg is not None and bg.post_promotion_analysis:
            steps.append(
                "post-promotion analysis " + ", ".join(bg.post_promotion_analysis.templates)
            )
    else:
        rolling = spec.rolling
        surge = max(1, resolve_count(rolling.max_surge, spec.instances, round_up=True))
        down = resolve_count(rolling.max_unavailable, spec.instances, round_up=False)
        steps.append(
            f"replace {spec.instances} instances, {surge} more and {down} fewer at a time"
            + (f", each ready {format_duration(rolling.min_ready)}" if rolling.min_ready else "")
        )
    steps += ["smoke checks through the router"] if spec.smoke else []
    return steps


def _canary_step(spec: Spec, step: CanaryStep, risky: bool) -> str:
    if step.pause is not None and step.pause.duration and risky:
        factor = spec.caution.irreversible.pause_factor
        if factor != 1:
            longer = format_duration(step.pause.duration * factor)
            return f"pause {longer} ({format_duration(step.pause.duration)} x{factor:g}: caution)"
    text = describe(step)
    canary = spec.strategy.canary
    if (
        risky
        and spec.caution.irreversible.analysis_every_step
        and canary is not None
        and canary.analysis is not None
        and step.set_weight
    ):
        text += ", then the background analysis once more (caution)"
    return text


def _switch(spec: Spec) -> str:
    bg = spec.strategy.blue_green
    if bg is None or (bg.auto_promote and bg.auto_promote_after is None):
        return "switch all traffic when every instance is ready"
    if bg.auto_promote_after is not None:
        return f"switch all traffic {format_duration(bg.auto_promote_after)} after ready"
    return "switch all traffic on `zerodown promote`"


# --- what triggers a rollback -----------------------------------------------------------------


def _analysis_triggers(spec: Spec, strategy: str, risky: bool) -> list[Trigger]:
    found: list[Trigger] = []
    canary, bg = spec.strategy.canary, spec.strategy.blue_green
    runs: list[tuple[str, str, Any]] = []
    if strategy == "canary" and canary is not None:
        if canary.analysis is not None:
            start = canary.analysis.starting_step
            when = f"in the background from step {start + 1}" if start else "in the background"
            runs.append(("analysis:background", when + ", across the steps", canary.analysis))
        for n, step in enumerate(canary.steps, 1):
            if step.analysis is not None:
                runs.append(
                    (f"analysis:step-{n}", f"at step {n}, which waits for it", step.analysis)
                )
    if strategy == "blue_green" and bg is not None:
        if bg.pre_promotion_analysis is not None:
            runs.append(("analysis:pre", "before the switch", bg.pre_promotion_analysis))
        if bg.post_promotion_analysis is not None:
            runs.append(("analysis:post", "after the switch", bg.post_promotion_analysis))
    for key, when, ref in runs:
        resolved = resolve(spec.analysis, ref)
        for metric in resolved.metrics:
            dry = metric.name in resolved.dry_run
            found.append(
                _metric_trigger(key, when, metric, dry=dry, before_traffic=key.endswith(":pre"))
            )
    if (
        risky
        and strategy == "canary"
        and canary is not None
        and canary.analysis is not None
        and spec.caution.irreversible.analysis_every_step
    ):
        found.append(
            Trigger(
                kind="analysis",
                name="analysis:caution-N",
                watches="after every weight (caution: irreversible migration)",
                condition="the background analysis once more, each metric bounded",
                effect="abort: canary weight 0",
            )
        )
    return found


def metric_detect(metric: MetricSpec) -> tuple[float, str]:
    """Seconds from a regression to the metric failing, and the formula with its numbers."""
    interval = metric.interval or 0.0
    first = first_wait(metric)
    measure = 0.0 if metric.provider_kind == "router" else metric.timeout
    seconds = max(first, interval) + metric.failure_limit * interval + measure
    parts = [f"max(first {format_duration(first)}, interval {format_duration(interval)})"]
    if metric.failure_limit:
        parts.append(f"{metric.failure_limit} x {format_duration(interval)}")
    if measure:
        parts.append(f"{format_duration(measure)} query timeout")
    return seconds, " + ".join(parts)


def _metric_trigger(
    key: str, when: str, metric: MetricSpec, *, dry: bool, before_traffic: bool
) -> Trigger:
    what = metric.query or metric.provider_kind
    conditions = [f"fails when {metric.failure_condition}"] if metric.failure_condition else []
    conditions += [f"passes when {metric.success_condition}"] if metric.success_condition else []
    if metric.max_increase is not None:
        conditions.append(f"fails above baseline + {metric.max_increase.describe()}")
    if metric.judge is not None:
        conditions.append("Mann-Whitney judge against the baseline")
    seconds, formula = metric_detect(metric)
    settings: dict[str, Any] = {
        "provider": metric.provider_kind,
        "query": metric.query,
        "interval": metric.interval,
        "count": metric.count,
        "failure_limit": metric.failure_limit,
        "inconclusive_limit": metric.inconclusive_limit,
        "consecutive_error_limit": metric.consecutive_error_limit,
        "min_samples": metric.min_samples if metric.provider_kind == "router" else None,
        "window": metric.window,
    }
    if metric.count is not None and metric.interval:
        until = first_wait(metric) + (metric.count - 1) * metric.interval
        when += f", for {format_duration(until)} ({metric.count} measurements)"
    if dry:
        effect = "none: dry run (measured and shown only)"
    elif before_traffic:
        effect = "abort before the switch (no traffic to move)"
    else:
        effect = "abort: traffic back on the stable release"
    return Trigger(
        kind="analysis",
        name=f"{key} {metric.name} ({what})",
        watches=when,
        condition="; ".join(conditions) or "errors only",
        effect=effect,
        settings={k: v for k, v in settings.items() if v is not None},
        detect=None if dry or before_traffic else seconds,
        formula=formula,
    )


def probe_detect(probe: ProbeSpec) -> float:
    """Seconds from an instance hanging to its probe failing for good: each of the
    failure_threshold probes waits its timeout, then the prober sleeps a period (engine.health
    probes one at a time)."""
    return probe.failure_threshold * (probe.timeout + probe.period)


def _other_triggers(spec: Spec, strategy: str) -> list[Trigger]:
    found: list[Trigger] = []
    probes = spec.probes
    for kind, probe, effect in (
        ("readiness", probes.readiness, "the instance leaves the route table (no rollback)"),
        ("liveness", probes.liveness, "the instance is restarted (no rollback)"),
        (
            "startup",
            probes.startup,
            "the instance fails; the rollout waits or its deadline ends it",
        ),
    ):
        if probe is None:
            continue
        check = probe.http or ("tcp" if probe.tcp is not None else "exec")
        found.append(
            Trigger(
                kind="probe",
                name=f"{kind} probe {check}",
                watches="every instance, always",
                condition=f"{probe.failure_threshold} failures in a row, every "
                f"{format_duration(probe.period)} (timeout {format_duration(probe.timeout)})",
                effect=effect,
                settings={
                    "period": probe.period,
                    "timeout": probe.timeout,
                    "failure_threshold": probe.failure_threshold,
                    "success_threshold": probe.success_threshold,
                    "initial_delay": probe.initial_delay,
                },
                detect=None,
                formula="failure_threshold x (timeout + period) = "
                + format_duration(probe_detect(probe)),
            )
        )
    deadline = _deadline(spec, strategy)
    found.append(
        Trigger(
            kind="progress-deadline",
            name="progress deadline",
            watches="while the rollout moves",
            condition=f"no progress for {format_duration(deadline)}",
            effect="fail: traffic back on the stable release",
            settings={"progress_deadline": deadline},
        )
    )
    if spec.smoke is not None:
        names = ", ".join(c.name for c in spec.smoke.checks)
        found.append(
            Trigger(
                kind="smoke",
                name="smoke checks after promotion",
                watches="once, through the router, after the last promotion",
                condition=f"any of {names} fails (budget {format_duration(spec.smoke.timeout)})",
                effect="abort: traffic back on the stable release",
                settings={"timeout": spec.smoke.timeout, "checks": len(spec.smoke.checks)},
            )
        )
        found.append(
            Trigger(
                kind="smoke",
                name="smoke checks before traffic",
                watches="once, against the new release, before its first request",
                condition=f"any of {names} fails",
                effect="fail before any traffic (nothing to move)",
            )
        )
    for guard in spec.flag_guards:
        for metric in resolve(spec.analysis, guard.analysis).metrics:
            seconds, formula = metric_detect(metric)
            found.append(
                Trigger(
                    kind="flag-guard",
                    name=f"flag guard {guard.flag}: {metric.name}",
                    watches=f"variant {guard.on} against {guard.off}, always",
                    condition=metric.failure_condition or "against the baseline",
                    effect=f"flag {guard.flag} killed (the release stays)",
                    detect=None,
                    formula=f"{formula} = {format_duration(seconds)}",
                )
            )
    return found


def _deadline(spec: Spec, strategy: str) -> float:
    if strategy == "canary" and spec.strategy.canary is not None:
        return spec.strategy.canary.progress_deadline
    if strategy == "blue_green" and spec.strategy.blue_green is not None:
        return spec.strategy.blue_green.progress_deadline
    return spec.rolling.progress_deadline


def _fastest(triggers: list[Trigger]) -> Trigger | None:
    timed = [t for t in triggers if t.detect is not None]
    return min(timed, key=lambda t: t.detect or 0.0) if timed else None


# --- who, how, what blocks it -----------------------------------------------------------------


def _who(spec: Spec, triggers: list[Trigger]) -> list[str]:
    people = (
        "anyone holding the admin token (.zerodown/token): `zerodown abort`, `zerodown rollback`,"
        " POST /api/abort or /api/rollback, the dashboard's buttons"
    )
    who = [people]
    if spec.api.read_token:
        who.append("the read token (api.read_token) shows the state but cannot roll back")
    automatic = sorted({t.kind for t in triggers if t.effect.startswith(("abort", "fail:"))})
    if automatic:
        who.append("the controller by itself, on: " + ", ".join(automatic))
    return who


def _how(spec: Spec, strategy: str, stable: str | None) -> tuple[int, str, float]:
    """Instances to launch, the words, and seconds from the decision to traffic on stable."""
    route = RECONCILE_PASS + ROUTE_APPLY
    if stable is None:
        return 0, "nothing to go back to: no release has completed a rollout yet", route
    if strategy == "canary":
        return (
            0,
            (
                f"route change only: canary weight 0 in the same pass; {stable} stays at full size "
                "throughout, then the canary's instances are stopped"
            ),
            route,
        )
    if strategy == "blue_green":
        bg = spec.strategy.blue_green
        delay = bg.scale_down_delay if bg is not None else 30.0
        return (
            0,
            (
                f"route change only: before the switch no traffic moves; after it, {stable} stays "
                f"warm for {format_duration(delay)} (scale_down_delay), so traffic goes back in one "
                f"route change; later a rollback launches {spec.instances} instances of it again"
            ),
            route,
        )
    rolling = spec.rolling
    surge = max(1, resolve_count(rolling.max_surge, spec.instances, round_up=True))
    batches = math.ceil(spec.instances / surge)
    ready = spec.probes.readiness
    per_batch = ready.initial_delay + ready.period * ready.success_threshold + rolling.min_ready
    return (
        spec.instances,
        (
            f"a rolling update back: {spec.instances} instances of {stable} to launch, {surge} at a "
            f"time ({batches} batches, each at least the app's start time + "
            f"{format_duration(per_batch)} of readiness)"
        ),
        route + batches * per_batch,
    )


def _migrations(outlook: MigrationOutlook, *, has_migrations: bool) -> list[str]:
    out = []
    if outlook.to_contract:
        out.append(f"this deploy first contracts {outlook.to_contract} (started by the last one)")
    if outlook.to_start:
        out.append(
            f"it starts {outlook.to_start} (expand); a rollback during the rollout rolls it back "
            "(the old release keeps its schema): no migration is crossed"
        )
    if not out:
        out.append("no migration is started or contracted")
    if has_migrations:
        out.append(f"known from {outlook.source}")
    return out


def _blockers(spec: Spec, outlook: MigrationOutlook) -> list[str]:
    out = []
    if outlook.to_contract and outlook.older_schemas:
        revs = ", ".join(str(r) for r in outlook.older_schemas)
        out.append(
            f"once {outlook.to_contract} is contracted, rolling back to revision(s) {revs} crosses "
            "a completed contract: refused without --force"
            + (" (and its data is gone)" if outlook.contract_reasons else "")
        )
    if outlook.to_start and outlook.start_reasons:
        out.append(
            f"after {outlook.to_start} is contracted ({'; '.join(outlook.start_reasons)}), no "
            "rollback to the release before this one is possible: the data is gone"
        )
    if spec.migrations is not None and spec.migrations.quiet_period is not None:
        out.append(
            f"migrations.quiet_period {format_duration(spec.migrations.quiet_period)}: the "
            "contract comes by itself once the old release's connections are gone"
        )
    return out


def _caution(spec: Spec, strategy: str, outlook: MigrationOutlook) -> list[str]:
    out = []
    if outlook.start_reasons:
        effects = "; ".join(caution.effects(spec, strategy=strategy)) or "nothing is configured"
        out.append(f"raised by {outlook.to_start} ({'; '.join(outlook.start_reasons)}): {effects}")
    if outlook.contract_reasons and spec.caution.irreversible.manual_contract:
        out.append(
            f"{outlook.to_contract} cannot be undone ({'; '.join(outlook.contract_reasons)}): "
            "this deploy stops before contracting it; run `zerodown migrate complete` first"
        )
    return out


def _notes(stable: str | None, first: bool, triggers: list[Trigger]) -> list[str]:
    notes = []
    if not any(t.detect is not None for t in triggers):
        notes.append(
            "no analysis watches this rollout: a release that serves errors while its probes "
            "pass stays until a person rolls back"
        )
    if any(
        t.kind == "analysis"
        and t.settings.get("provider") == "router"
        and "window" not in t.settings
        for t in triggers
    ):
        notes.append(
            "router metrics without `window` measure since the analysis started: a regression "
            "after clean traffic is diluted and detected later than computed"
        )
    if stable is None and not first:
        notes.append(f"no state store to read: {UNKNOWN_STABLE!r} stands for the release serving")
    return notes


def render_seconds(seconds: float | None) -> str:
    return "not bounded" if seconds is None else f"{seconds:.2f}s"
