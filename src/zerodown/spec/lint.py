"""`zerodown lint`: the mistakes in a valid spec that the article warns about and that users of
Kubernetes, Argo Rollouts and Flagger report, each with why it matters and the fix.

Pure: rules read a Spec (and, for the drain rule, the longest request the router has seen, which
the caller reads) and return findings located by their field path; the CLI turns a path into
the file's line. An `error` is a spec that cannot do what it says (an analysis that can never
fail, or that always fails); a `warning` is a choice that costs failed requests or slow
rollbacks; a `note` says a rule could not run.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from zerodown.core.analysis import expr
from zerodown.spec.analysis import MetricSpec, TemplateSpec
from zerodown.spec.model import ProbeSpec, Spec
from zerodown.spec.types import format_duration

ERROR, WARNING, NOTE = "error", "warning", "note"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    loc: Loc  # the field it is about, as a path into the spec
    why: str
    fix: str
    line: int | None = None

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.loc) or "(top level)"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "field": self.field,
            "line": self.line,
            "why": self.why,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Observed:
    """What the caller could read beside the spec; None: not known (the rule says so)."""

    longest_request: float | None = None  # seconds, from the router's latency histogram
    router_note: str = "no router runs for this spec"
    cores: int | None = None  # this machine's (os.cpu_count())


Rule = Callable[[Spec, Observed], Iterator[Finding]]


def lint(spec: Spec, observed: Observed | None = None) -> list[Finding]:
    seen = observed or Observed()
    found = [f for rule in RULES for f in rule(spec, seen)]
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    return sorted(found, key=lambda f: (order[f.severity], f.loc))


# --- probes -----------------------------------------------------------------------------------


def _endpoint(probe: ProbeSpec) -> str:
    if probe.http is not None:
        return f"http {probe.http}"
    if probe.tcp is not None:
        return f"tcp {probe.tcp.port or 'the instance port'}"
    return "exec " + " ".join(probe.exec or [])


def same_endpoint(spec: Spec, _: Observed) -> Iterator[Finding]:
    live, ready = spec.probes.liveness, spec.probes.readiness
    if live is not None and _endpoint(live) == _endpoint(ready):
        yield Finding(
            "liveness-is-readiness",
            WARNING,
            ("probes", "liveness"),
            f"liveness and readiness both check {_endpoint(live)}: an instance that is busy or "
            "waiting on the database fails readiness (right: no traffic) and then liveness too "
            "(wrong: it is killed, and its neighbours get its load)",
            "give liveness a cheap endpoint that answers while the process runs (e.g. /livez), "
            "and keep the dependency checks in readiness",
        )


def no_readiness(spec: Spec, _: Observed) -> Iterator[Finding]:
    if "readiness" not in spec.probes.model_fields_set:
        yield Finding(
            "no-readiness-probe",
            WARNING,
            ("probes",),
            "no readiness probe is set, so an instance gets traffic as soon as its port accepts "
            "a connection (the default TCP check), before it has loaded what it needs: the "
            "first requests of every new instance can fail",
            "add probes.readiness: {http: /ready, period: 1s} answering 200 only once the "
            "instance can serve",
        )


DEPENDENCY_WORDS = re.compile(
    r"(^|[/_.-])(db|database|postgres|pg|mysql|mariadb|redis|cache|deps|dependencies|deep|"
    r"upstream|backend)s?($|[/_.?-])",
    re.IGNORECASE,
)
"""Path words that say a health endpoint checks a dependency (a heuristic: zerodown cannot see
what the endpoint does)."""


def liveness_on_dependency(spec: Spec, _: Observed) -> Iterator[Finding]:
    live = spec.probes.liveness
    if live is not None and live.http is not None and DEPENDENCY_WORDS.search(live.http):
        yield Finding(
            "liveness-checks-dependency",
            WARNING,
            ("probes", "liveness", "http"),
            f"the liveness path {live.http} looks like it checks a dependency (by its name): "
            "when the database is down every instance fails liveness and is restarted, which "
            "does not bring the database back and turns its outage into yours",
            "point liveness at an endpoint that checks the process only; put dependency "
            "checks in readiness",
        )


def probe_timeouts(spec: Spec, _: Observed) -> Iterator[Finding]:
    """Liveness and readiness only: a startup probe of a starting app fails fast (connection
    refused), so a short period with the default timeout is the usual, harmless choice."""
    for kind in ("liveness", "readiness"):
        probe: ProbeSpec | None = getattr(spec.probes, kind)
        if probe is not None and probe.timeout > probe.period:
            slow = probe.failure_threshold * (probe.timeout + probe.period)
            yield Finding(
                "probe-timeout-over-period",
                WARNING,
                ("probes", kind, "timeout"),
                f"the {kind} probe may wait {format_duration(probe.timeout)} for an answer but "
                f"is meant to run every {format_duration(probe.period)}: a hung instance holds "
                f"each probe for the whole timeout, so it is found out after "
                f"{format_duration(slow)} (failure_threshold x (timeout + period)), not the "
                f"{format_duration(probe.failure_threshold * probe.period)} the period suggests",
                f"set timeout at most the period ({format_duration(probe.period)}), or a "
                "longer period",
            )


# --- draining ---------------------------------------------------------------------------------


def drain_too_short(spec: Spec, seen: Observed) -> Iterator[Finding]:
    if seen.longest_request is None:
        yield Finding(
            "drain-vs-longest-request",
            NOTE,
            ("run", "drain"),
            f"not checked: {seen.router_note}, so the longest request is not known",
            "run `zerodown lint` while the service runs to compare run.drain with the longest "
            "request its router has seen",
        )
        return
    if spec.run.drain < seen.longest_request:
        yield Finding(
            "drain-vs-longest-request",
            WARNING,
            ("run", "drain"),
            f"the router has seen a request take up to {seen.longest_request:.1f}s, but an "
            f"instance is stopped {format_duration(spec.run.drain)} after leaving the route "
            "table: such a request is cut off at every deploy",
            f"set run.drain above {seen.longest_request:.0f}s (and stop_timeout for the app's "
            "own shutdown), or make the long requests resumable",
        )


# --- analysis ---------------------------------------------------------------------------------

_RESULTS = (-1e9, -1.0, 0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 10.0, 1e3, 1e9)
_SAMPLES = (0.0, 1.0, 50.0, 1e6)


def constant(condition: str) -> bool | None:
    """The value a condition takes for every plausible measurement, or None when it varies.

    A heuristic by sampling: results and baselines from -1e9 to 1e9, samples from 0 to 1e6."""
    tree = expr.parse(condition)
    outcomes = set()
    for result, baseline, samples in itertools.product(_RESULTS, _RESULTS[2:], _SAMPLES):
        env = {"result": result, "baseline": baseline, "samples": samples}
        try:
            outcomes.add(expr.evaluate_condition(tree, env))
        except expr.ExprError:
            continue
        if len(outcomes) > 1:
            return None
    return outcomes.pop() if len(outcomes) == 1 else None


def _metrics(spec: Spec) -> Iterator[tuple[Loc, str, MetricSpec, TemplateSpec]]:
    for name, template in spec.analysis.templates.items():
        for n, metric in enumerate(template.metrics):
            yield ("analysis", "templates", name, "metrics", n), name, metric, template


def analysis_never_fails(spec: Spec, _: Observed) -> Iterator[Finding]:
    for loc, template_name, metric, template in _metrics(spec):
        if metric.name in template.dry_run:
            continue
        yield from _conditions(loc, metric)
        if metric.count is not None and metric.failure_limit >= metric.count:
            yield Finding(
                "analysis-cannot-fail",
                ERROR,
                (*loc, "failure_limit"),
                f"metric {metric.name} is measured {metric.count} times and fails after more "
                f"than {metric.failure_limit} failed measurements: it can never fail",
                f"set failure_limit below count (e.g. {max(0, metric.count - 2)}), or raise count",
            )
        if (
            metric.failure_condition is None
            and metric.success_condition is None
            and metric.compare is None
        ):
            yield Finding(
                "analysis-without-condition",
                WARNING,
                loc,
                f"metric {metric.name} of template {template_name} has no condition: only "
                "measurement errors can fail it, so a regression passes",
                'add failure_condition (e.g. "result > 0.05") or compare: baseline with '
                "max_increase",
            )


def _conditions(loc: Loc, metric: MetricSpec) -> Iterator[Finding]:
    for field, meaning in (("failure_condition", True), ("success_condition", False)):
        text = getattr(metric, field)
        if text is None:
            continue
        value = constant(text)
        if value is None:
            continue
        fails_always = value == meaning
        yield Finding(
            "analysis-always-fails" if fails_always else "analysis-cannot-fail",
            ERROR,
            (*loc, field),
            f"{field} {text!r} is {str(value).lower()} whatever is measured: metric "
            f"{metric.name} "
            + (
                "fails at its first measurement, so every rollout aborts"
                if fails_always
                else "can never fail on what it measures"
            ),
            'write the condition over `result` (and `baseline`, `samples`), e.g. "result > 0.05"',
        )


def background_measured_once(spec: Spec, _: Observed) -> Iterator[Finding]:
    canary = spec.strategy.canary
    if canary is None or canary.analysis is None:
        return
    for name in canary.analysis.templates:
        template = spec.analysis.templates[name]
        for n, metric in enumerate(template.metrics):
            if metric.interval is None and metric.name not in template.dry_run:
                yield Finding(
                    "background-analysis-measured-once",
                    WARNING,
                    ("analysis", "templates", name, "metrics", n),
                    f"metric {metric.name} has no interval: the background analysis measures "
                    "it once at the start, and nothing watches the later, larger steps",
                    "give it an interval (e.g. 10s) and no count, so it watches until the end",
                )


def analysis_all_dry(spec: Spec, _: Observed) -> Iterator[Finding]:
    for name, template in spec.analysis.templates.items():
        if template.metrics and all(m.name in template.dry_run for m in template.metrics):
            yield Finding(
                "analysis-all-dry-run",
                WARNING,
                ("analysis", "templates", name, "dry_run"),
                f"every metric of template {name} is a dry run: it is shown but never decides",
                "take the metrics that should decide out of dry_run",
            )


# --- strategies -------------------------------------------------------------------------------


def canary_short_of_100(spec: Spec, _: Observed) -> Iterator[Finding]:
    canary = spec.strategy.canary
    if canary is None:
        return
    weights = [s.set_weight for s in canary.steps if s.set_weight is not None]
    if not weights or weights[-1] != 100:
        last = weights[-1] if weights else 0
        yield Finding(
            "canary-never-reaches-100",
            WARNING,
            ("strategy", "canary", "steps"),
            f"the last weight step is {last}%: after the steps the canary jumps from {last}% "
            "to all traffic at once, with no pause or analysis watching that jump",
            "end the steps with a pause or an analysis, then set_weight: 100",
        )


def blue_green_unchecked(spec: Spec, _: Observed) -> Iterator[Finding]:
    bg = spec.strategy.blue_green
    if bg is None:
        return
    if bg.pre_promotion_analysis is None and spec.smoke is None and spec.compat is None:
        automatic = bg.auto_promote and bg.auto_promote_after is None
        yield Finding(
            "blue-green-without-preview-checks",
            WARNING,
            ("strategy", "blue_green"),
            "nothing checks the new environment before the switch (no smoke checks, no "
            "compat, no pre_promotion_analysis)"
            + (": it takes all traffic as soon as its probes pass" if automatic else ""),
            "add smoke: {checks: [...]} (run against the preview before the switch) or "
            "pre_promotion_analysis",
        )


# --- the router ---------------------------------------------------------------------------------


def router_workers_beyond_cores(spec: Spec, seen: Observed) -> Iterator[Finding]:
    workers = spec.router.workers
    if workers == "auto" or seen.cores is None or workers <= seen.cores:
        return
    yield Finding(
        "router-workers-beyond-cores",
        WARNING,
        ("router", "workers"),
        f"{workers} router processes on a machine with {seen.cores} cores: the ones beyond a "
        "core each only share one with another (and with the service), while each holds its own "
        "memory and connections to the backends",
        f"router.workers: auto (one per core), or at most {seen.cores}",
    )


RULES: tuple[Rule, ...] = (
    same_endpoint,
    no_readiness,
    liveness_on_dependency,
    probe_timeouts,
    drain_too_short,
    analysis_never_fails,
    background_measured_once,
    analysis_all_dry,
    canary_short_of_100,
    blue_green_unchecked,
    router_workers_beyond_cores,
)
