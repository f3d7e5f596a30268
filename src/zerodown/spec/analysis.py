"""The `analysis:` part of zerodown.yaml: templates of metrics that decide promotion or abort.

    analysis:
      templates:
        health:
          metrics:
            - name: error-rate
              provider: router
              query: error_rate
              interval: 1s
              count: 10
              failure_condition: "result > 0.05"

Field names and limits follow Argo Rollouts' AnalysisTemplate (snake_case): failure_limit and
inconclusive_limit default to 0, consecutive_error_limit to 4. Conditions are parsed here, so a
bad expression is a spec error that points at its line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from zerodown.core.analysis import expr
from zerodown.spec.types import Duration, Interval, StrictModel, Timeout, parse_duration, shorten

ROUTER_QUERIES = ("error_rate", "request_rate", "latency_p50", "latency_p90", "latency_p99")
"""What the built-in router provider can measure (rates per second, latencies in seconds)."""

CONDITION_NAMES = ("result", "baseline", "samples")
"""Names a condition may use: the measured value, the stable release's value (with
`compare: baseline`) and the number of requests the measurement saw (router provider)."""

NAME = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$"

MAX_COUNT = 100_000
"""Measurements of one metric, and the limits on their outcomes."""
MAX_SAMPLES = 1_000_000_000
"""Requests a measurement may require (min_samples)."""
MAX_RELATIVE = 100.0
"""max_increase as a share of the baseline: 10000%."""
MAX_ABSOLUTE = 1e9


def _condition(text: str) -> str:
    try:
        expr.check(text, CONDITION_NAMES)
    except expr.ExprError as exc:
        raise ValueError(f"bad condition {text!r}: {exc}") from None
    return text


Condition = Annotated[str, AfterValidator(_condition)]
"""A boolean expression over `result` (see zerodown.core.analysis.expr)."""


class MaxIncrease(StrictModel):
    """How much worse than the baseline the canary may be: relative ("20%") or absolute."""

    relative: float | None = None  # 0.2 for "20%"
    absolute: float | None = None  # in the metric's unit (seconds for latencies)

    def limit(self, baseline: float) -> float:
        if self.relative is not None:
            return baseline * (1 + self.relative)
        assert self.absolute is not None
        return baseline + self.absolute

    def describe(self) -> str:
        if self.relative is not None:
            return f"{self.relative * 100:g}%"
        return f"{self.absolute:g}"


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def _max_increase(value: Any) -> Any:
    if isinstance(value, MaxIncrease | dict):
        return value
    if isinstance(value, bool):
        raise ValueError("max_increase is a percentage like '20%' or an amount like 0.01 or '50ms'")
    if isinstance(value, int | float):
        return MaxIncrease(absolute=_amount(value))
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            share = float(match.group(1)) / 100
            if share > MAX_RELATIVE:
                raise ValueError(f"max_increase {shorten(value)} is over {MAX_RELATIVE * 100:g}%")
            return MaxIncrease(relative=share)
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = None
        if seconds is not None:
            return MaxIncrease(absolute=_amount(seconds))
    raise ValueError(
        f"{shorten(value)} is not a max_increase; write a percentage like '20%', "
        "an amount like 0.01, or a duration like '50ms'"
    )


def _amount(value: float) -> float:
    if value < 0:
        raise ValueError("max_increase cannot be negative")
    if not value <= MAX_ABSOLUTE:  # also NaN
        raise ValueError(f"max_increase must be at most {MAX_ABSOLUTE:g}, not {shorten(value)}")
    return float(value)


MaxIncreaseField = Annotated[
    MaxIncrease, BeforeValidator(_max_increase, json_schema_input_type=str | float)
]


class PrometheusProvider(StrictModel):
    address: str = Field(pattern=r"^https?://", examples=["http://127.0.0.1:9090"])
    headers: dict[str, str] = Field(default_factory=dict)


class WebProvider(StrictModel):
    url: str = Field(
        pattern=r"^https?://", description="GET; {canary}, {stable}, {service} substituted"
    )
    json_path: str | None = Field(
        None,
        description="dotted path to a number, e.g. data.error_rate or items.0.value; "
        "omitted = the whole body is the number",
    )
    headers: dict[str, str] = Field(default_factory=dict)


class ProviderChoice(StrictModel):
    prometheus: PrometheusProvider | None = None
    web: WebProvider | None = None
    command: list[str] | None = Field(None, min_length=1, description="argv; exit 0 = success")

    @model_validator(mode="after")
    def _exactly_one(self) -> ProviderChoice:
        given = [k for k in ("prometheus", "web", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a provider is 'router' or exactly one of {prometheus: …}, {web: …}, {command: […]}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("prometheus", "web", "command") if getattr(self, k) is not None)


class MannWhitneyJudge(StrictModel):
    """Kayenta-style judge: Mann-Whitney U of canary against baseline samples.

    `allowed_effect` bounds the probability that a canary sample is worse than a baseline one
    (Vargha-Delaney A; 0.5 = no difference, 0.56 small, 0.64 medium, 0.71 large).
    """

    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    allowed_effect: float = Field(0.6, ge=0.5, lt=1.0)


def _probability(value: Any) -> Any:
    """false_abort: '1%' or 0.01; strictly between 0 and 50%."""
    share: float | None = None
    if isinstance(value, str):
        match = _PERCENT.match(value)
        share = float(match.group(1)) / 100 if match else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    if share is None:
        raise ValueError(f"{shorten(value)} is not a probability; write '1%' or 0.01")
    if not 0 < share <= 0.5:
        raise ValueError(f"false_abort must be above 0 and at most 50%, not {shorten(value)}")
    return share


def _share(value: Any) -> Any:
    """max_increase of a sequential judge: '1%' or 0.01, from 0 to 100%."""
    share: float | None = None
    if isinstance(value, str):
        match = _PERCENT.match(value)
        share = float(match.group(1)) / 100 if match else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    if share is None or not 0 <= share <= 1:
        raise ValueError(f"{shorten(value)} is not a share from 0 to 100%; write '1%' or 0.01")
    return share


Probability = Annotated[float, BeforeValidator(_probability, json_schema_input_type=str | float)]
Share = Annotated[float, BeforeValidator(_share, json_schema_input_type=str | float)]

MAX_IGNORE_BELOW = 60.0
"""Seconds: the largest latency difference a sequential latency judge may ignore."""

SEQUENTIAL_INTERVAL = 1.0
"""Seconds between two looks of a sequential judge without `interval` (each look takes every
request since the last one, so the interval only sets how soon a decision is acted on)."""


class SequentialJudge(StrictModel):
    """Anytime-valid judge (zerodown.core.analysis.sequential): every canary and baseline request
    as it arrives; fails the moment the evidence crosses its boundary. A canary as good as the
    baseline is ever failed with probability at most `false_abort`, however long it is watched."""

    metric: Literal["error_rate", "latency"] = Field(
        description="error_rate: 5xx and unanswered requests; latency: per-request latencies"
    )
    false_abort: Probability = Field(
        description="the probability of ever failing a canary as good as the baseline"
    )
    max_increase: Share | None = Field(
        None,
        description="error_rate: percentage points above the baseline's rate that are "
        "tolerated (default 0); latency: how much slower (relative) at p50/p90/p99 is "
        "tolerated: failed only beyond it, passed once shown within it (default: 5% "
        "tolerated, and the judge never passes, it only watches)",
    )
    stochastic_order: Literal["canary_slower"] | None = Field(
        None, description="latency: the alternative tested, that the canary is slower"
    )
    ignore_below: Duration | None = Field(
        None,
        description="latency: a difference this small is always tolerated, however large "
        "relatively (default 1ms)",
    )
    warmup: int | None = Field(
        None,
        ge=0,
        le=MAX_SAMPLES,
        description="latency: the canary's first requests, not judged (default 100)",
    )

    @model_validator(mode="after")
    def _fits_metric(self) -> SequentialJudge:
        if self.metric == "latency" and self.stochastic_order is None:
            raise ValueError(
                "a sequential latency judge needs stochastic_order: canary_slower "
                "(the alternative it tests)"
            )
        if self.metric == "error_rate":
            extra = [
                name
                for name in ("stochastic_order", "ignore_below", "warmup")
                if getattr(self, name) is not None
            ]
            if extra:
                verb = "applies" if len(extra) == 1 else "apply"
                raise ValueError(f"{' and '.join(extra)} {verb} to metric: latency only")
        if self.ignore_below is not None and self.ignore_below > MAX_IGNORE_BELOW:
            raise ValueError(
                f"ignore_below is at most {MAX_IGNORE_BELOW:g}s (a latency judge that ignores "
                f"more would never fail), not {self.ignore_below:g}s"
            )
        return self


class JudgeSpec(StrictModel):
    """Exactly one judge; `judge: {}` is the Mann-Whitney judge with its defaults."""

    mann_whitney: MannWhitneyJudge | None = None
    sequential: SequentialJudge | None = None

    @model_validator(mode="after")
    def _one(self) -> JudgeSpec:
        if self.mann_whitney is not None and self.sequential is not None:
            raise ValueError("a metric has one judge: mann_whitney or sequential, not both")
        if self.mann_whitney is None and self.sequential is None:
            return self.model_copy(update={"mann_whitney": MannWhitneyJudge()})
        return self


class MetricSpec(StrictModel):
    name: str = Field(pattern=NAME)
    provider: Literal["router"] | ProviderChoice = "router"
    query: str | None = Field(
        None, description="router: error_rate, request_rate, latency_p50/p90/p99; or PromQL"
    )
    interval: Interval | None = Field(
        None, description="time between measurements; each measurement is taken at the end of one"
    )
    count: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="measurements; omitted = until the run ends"
    )
    initial_delay: Duration | None = Field(
        None,
        description="before the first measurement; omitted = one interval (router without "
        "interval: 10s, so its window holds traffic; other providers: at once)",
    )
    window: Duration | None = Field(
        None,
        gt=0,
        description="router: trailing window a measurement covers; omitted = since "
        "the analysis started",
    )
    timeout: Timeout = Field(10.0, description="for one measurement")
    failure_condition: Condition | None = None
    success_condition: Condition | None = None
    failure_limit: int = Field(0, ge=0, le=MAX_COUNT)
    inconclusive_limit: int = Field(0, ge=0, le=MAX_COUNT)
    consecutive_error_limit: int = Field(4, ge=0, le=MAX_COUNT)
    min_samples: int = Field(
        50, ge=0, le=MAX_SAMPLES, description="fewer requests in the window: never a pass"
    )
    compare: Literal["baseline"] | None = None
    max_increase: MaxIncreaseField | None = None
    judge: JudgeSpec | None = None

    @property
    def provider_kind(self) -> str:
        return "router" if isinstance(self.provider, str) else self.provider.kind

    @property
    def sequential(self) -> SequentialJudge | None:
        return None if self.judge is None else self.judge.sequential

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        if self.sequential is not None:
            return self._sequential_ok()
        kind = self.provider_kind
        if kind == "router":
            if self.query not in ROUTER_QUERIES:
                raise ValueError(
                    f"the router provider measures one of {', '.join(ROUTER_QUERIES)}; "
                    f"query {self.query!r} is not one of them"
                )
        elif kind == "prometheus":
            if not self.query:
                raise ValueError("a prometheus metric needs a query (PromQL)")
        elif self.query is not None:
            raise ValueError(f"a {kind} provider takes no query; put it in the provider itself")
        if self.count is not None and self.count > 1 and self.interval is None:
            raise ValueError(f"count {self.count} needs an interval between the measurements")
        if self.window is not None and kind != "router":
            raise ValueError("window applies to the router provider only (PromQL has its own)")
        if self.compare is None:
            if self.max_increase is not None or self.judge is not None:
                raise ValueError("max_increase and judge need compare: baseline")
            if any("baseline" in _names(c) for c in self._conditions()):
                raise ValueError("a condition uses 'baseline', which needs compare: baseline")
        else:
            if kind not in ("router", "prometheus"):
                raise ValueError("compare: baseline works with the router and prometheus providers")
            if self.max_increase is None and self.judge is None and not self._conditions():
                raise ValueError(
                    "compare: baseline needs max_increase, a judge, or a condition using 'baseline'"
                )
            if self.judge is not None and (kind != "router" or self.query == "request_rate"):
                raise ValueError(
                    "the judge needs per-request samples: router provider, query error_rate "
                    "or latency_p50/p90/p99"
                )
        return self

    def _sequential_ok(self) -> MetricSpec:
        """A sequential judge takes every request of the router: its own metric, no window,
        no conditions; it compares with the baseline by definition."""
        if self.provider_kind != "router":
            raise ValueError("the sequential judge needs per-request samples: provider router")
        clashes = [
            name
            for name in (
                "query",
                "window",
                "max_increase",
                "failure_condition",
                "success_condition",
            )
            if getattr(self, name) is not None
        ]
        if clashes:
            raise ValueError(
                f"a metric with a sequential judge takes no {', '.join(clashes)}: the judge "
                "names its metric (judge.sequential.metric), reads every request, and decides "
                "by itself (max_increase goes inside judge.sequential)"
            )
        if self.interval is None or self.compare is None:
            return self.model_copy(
                update={
                    "interval": self.interval or SEQUENTIAL_INTERVAL,
                    "compare": "baseline",
                }
            )
        return self

    def _conditions(self) -> list[str]:
        return [c for c in (self.failure_condition, self.success_condition) if c is not None]


def _names(condition: str) -> set[str]:
    return expr.names(expr.parse(condition))


TemplateName = Annotated[str, Field(pattern=NAME)]


class TemplateSpec(StrictModel):
    metrics: list[MetricSpec] = Field(min_length=1)
    dry_run: list[str] = Field(
        default_factory=list, description="metric names measured and shown but never decisive"
    )

    @model_validator(mode="after")
    def _unique(self) -> TemplateSpec:
        seen: set[str] = set()
        for metric in self.metrics:
            if metric.name in seen:
                raise ValueError(f"metric {metric.name!r} appears twice")
            seen.add(metric.name)
        unknown = [n for n in self.dry_run if n not in seen]
        if unknown:
            raise ValueError(f"dry_run names unknown metric(s): {', '.join(unknown)}")
        return self


class AnalysisSpec(StrictModel):
    templates: dict[TemplateName, TemplateSpec] = Field(default_factory=dict)


class AnalysisRef(StrictModel):
    """Where a strategy uses templates: `analysis: {templates: [health], starting_step: 1}`."""

    templates: list[TemplateName] = Field(min_length=1)
    starting_step: int | None = Field(
        None, ge=0, le=1000, description="background analysis: the step index from which it runs"
    )
    dry_run: list[str] = Field(default_factory=list)


class ResolvedAnalysis(StrictModel):
    """The metrics an analysis run measures, with the set whose outcome is never decisive."""

    metrics: list[MetricSpec]
    dry_run: frozenset[str] = frozenset()


def resolve(analysis: AnalysisSpec, ref: AnalysisRef) -> ResolvedAnalysis:
    """Join the referenced templates; ValueError names a missing template or a clash.

    The spec's model validator calls this for every reference so that the mistakes show up when
    the file is loaded, not when the rollout reaches the step.
    """
    metrics: list[MetricSpec] = []
    dry_run: set[str] = set(ref.dry_run)
    seen: dict[str, str] = {}
    for name in ref.templates:
        template = analysis.templates.get(name)
        if template is None:
            known = ", ".join(sorted(analysis.templates)) or "none are defined"
            raise ValueError(f"analysis template {name!r} is not defined (known: {known})")
        for metric in template.metrics:
            if metric.name in seen:
                raise ValueError(
                    f"metric {metric.name!r} is in both templates {seen[metric.name]!r} and "
                    f"{name!r}; rename one"
                )
            seen[metric.name] = name
            metrics.append(metric)
        dry_run.update(template.dry_run)
    unknown = sorted(dry_run - set(seen))
    if unknown:
        raise ValueError(f"dry_run names unknown metric(s): {', '.join(unknown)}")
    return ResolvedAnalysis(metrics=metrics, dry_run=frozenset(dry_run))


ROUTER_FIRST_WAIT = 10.0
"""Seconds before a router metric without interval or initial_delay is measured."""


def first_wait(metric: MetricSpec) -> float:
    """Seconds from the start of the run to the metric's first measurement."""
    if metric.initial_delay is not None:
        return metric.initial_delay
    if metric.interval is not None:
        # a measurement summarises the interval that just ended, so the first comes after one
        return metric.interval
    return ROUTER_FIRST_WAIT if metric.provider_kind == "router" else 0.0


def is_bounded(metric: MetricSpec) -> bool:
    """True when the metric ends by itself (a count, or one measurement without interval).

    An inline `analysis:` step ends with its result, so its metrics must all be bounded.
    """
    return metric.count is not None or metric.interval is None
