"""AnalysisTemplates from `analysis.templates`, and the references a Rollout makes to them.

Providers: prometheus maps one to one; web becomes Argo's web metric; command a job metric (the
Job's success decides); router a Prometheus query on ingress-nginx's standard metrics
(`nginx_ingress_controller_requests`, `..._request_duration_seconds_bucket`) for the Service the
analysis watches. {service}, {canary} and {stable} become template args the Rollout fills in:
the service name, the version exported, and (for {stable}) the stable pod-template hash, since
Argo knows the stable ReplicaSet but not its version. A metric Argo cannot evaluate as zerodown
does (a baseline comparison, a condition on `samples`) is left out and reported, never half-kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zerodown.export.kubernetes.conditions import names, to_argo
from zerodown.export.kubernetes.container import image_ref
from zerodown.export.kubernetes.model import ExportOptions, Note, Object, Traffic
from zerodown.export.kubernetes.units import dns_label, go_duration, whole_seconds
from zerodown.spec.analysis import AnalysisRef, MetricSpec, ProviderChoice, first_wait
from zerodown.spec.model import Spec

API = "argoproj.io/v1alpha1"
FILE = "analysis.yaml"
DEFAULT_WINDOW = 60.0
"""Range of a router metric's PromQL when the spec gives no window (zerodown: since the start)."""
ARG_OF = {"{service}": "service", "{canary}": "canary", "{stable}": "stable-hash"}
TARGET = "target-service"
"""The router provider's arg: the Service whose ingress traffic the analysis measures."""

_REQUESTS = "nginx_ingress_controller_requests"
_DURATION = "nginx_ingress_controller_request_duration_seconds_bucket"
_QUANTILE = {"latency_p50": "0.5", "latency_p90": "0.9", "latency_p99": "0.99"}


def router_query(query: str, window: str) -> str:
    """The router provider's measurement as PromQL on ingress-nginx's metrics."""
    target = f'service="{{{{args.{TARGET}}}}}"'
    if query == "error_rate":
        errors = f'sum(rate({_REQUESTS}{{{target},status=~"5.."}}[{window}]))'
        total = f"sum(rate({_REQUESTS}{{{target}}}[{window}]))"
        return f"({errors} or vector(0)) / {total}"  # no 5xx at all is 0, not "no data"
    if query == "request_rate":
        return f"sum(rate({_REQUESTS}{{{target}}}[{window}]))"
    quantile = _QUANTILE[query]
    return f"histogram_quantile({quantile}, sum by (le) (rate({_DURATION}{{{target}}}[{window}])))"


@dataclass
class Templates:
    """The exported templates: objects, and the args each one takes."""

    objects: list[Object] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    """spec template name → AnalysisTemplate name (only the ones exported)."""
    args: dict[str, list[str]] = field(default_factory=dict)


def templates(spec: Spec, options: ExportOptions, notes: list[Note]) -> Templates:
    out = Templates()
    taken: set[str] = set()
    for name, template in spec.analysis.templates.items():
        where = f"analysis.templates.{name}"
        metrics: list[Object] = []
        for i, metric in enumerate(template.metrics):
            built = _metric(metric, f"{where}.metrics[{i}]", options, notes)
            if built is not None:
                metrics.append(built)
        if not metrics:
            notes.append(
                Note(where, "no metric of this template carries over; it is left out", FILE)
            )
            continue
        object_name = _unique(f"{spec.service}-{dns_label(name)}", taken)
        args = sorted({arg for m in metrics for arg in _args_in(m)})
        template_spec: Object = {"metrics": metrics}
        if args:
            template_spec = {"args": [{"name": a} for a in args], **template_spec}
        kept = {m["name"] for m in metrics}
        dry = [{"metricName": n} for n in template.dry_run if n in kept]
        if dry:
            template_spec["dryRun"] = dry
        out.objects.append(
            {
                "apiVersion": API,
                "kind": "AnalysisTemplate",
                "metadata": {"name": object_name, "labels": labels(spec)},
                "spec": template_spec,
            }
        )
        out.names[name], out.args[name] = object_name, args
    return out


def labels(spec: Spec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.service, "app.kubernetes.io/managed-by": "zerodown"}


def reference(
    ref: AnalysisRef,
    exported: Templates,
    *,
    spec: Spec,
    options: ExportOptions,
    target: str,
    where: str,
    notes: list[Note],
    file: str,
) -> Object | None:
    """A Rollout's analysis block for `ref`, or None when none of its templates carried over."""
    kept = [t for t in ref.templates if t in exported.names]
    for missing in (t for t in ref.templates if t not in exported.names):
        notes.append(
            Note(f"{where}.templates", f"template {missing!r} is left out (see above)", file)
        )
    if not kept:
        notes.append(Note(where, "no template of this analysis carries over: it is left out", file))
        return None
    block: Object = {"templates": [{"templateName": exported.names[t]} for t in kept]}
    values = {
        "service": {"name": "service", "value": spec.service},
        "canary": {"name": "canary", "value": options.version},
        "stable-hash": {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
        TARGET: {"name": TARGET, "value": target},
    }
    wanted = sorted({a for t in kept for a in exported.args[t]})
    if wanted:
        block["args"] = [values[a] for a in wanted]
    if ref.dry_run:
        block["dryRun"] = [{"metricName": n} for n in ref.dry_run]
    return block


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _args_in(metric: Object) -> set[str]:
    text = repr(metric)
    return {arg for arg in (*ARG_OF.values(), TARGET) if f"{{{{args.{arg}}}}}" in text}


def _with_args(text: str) -> str:
    for placeholder, arg in ARG_OF.items():
        text = text.replace(placeholder, f"{{{{args.{arg}}}}}")
    return text


def _metric(
    metric: MetricSpec, where: str, options: ExportOptions, notes: list[Note]
) -> Object | None:
    kind = metric.provider_kind
    if metric.compare is not None:
        return None  # reported with the fields that have no counterpart (coverage.FIELDS)
    if _uses_samples(metric):
        notes.append(
            Note(
                where,
                f"metric {metric.name!r} is left out: its condition uses "
                "`samples`, which Argo's Prometheus result does not carry",
                FILE,
            )
        )
        return None
    out: Object = {"name": metric.name}
    if metric.interval is not None:
        out["interval"] = go_duration(metric.interval)
    if metric.count is not None:
        out["count"] = metric.count
    wait = first_wait(metric)
    if wait:
        out["initialDelay"] = go_duration(wait)
    result = "result[0]" if kind in ("router", "prometheus") else "result"
    if kind != "command":
        for field_name, key in (
            ("success_condition", "successCondition"),
            ("failure_condition", "failureCondition"),
        ):
            condition = getattr(metric, field_name)
            if condition is not None:
                out[key] = to_argo(condition, result=result)
    out["failureLimit"] = metric.failure_limit
    out["inconclusiveLimit"] = metric.inconclusive_limit
    out["consecutiveErrorLimit"] = metric.consecutive_error_limit
    out["provider"] = _provider(metric, where, options, notes)
    if "{stable}" in repr(metric.provider) + (metric.query or ""):
        notes.append(
            Note(
                where,
                "{stable} becomes the stable ReplicaSet's pod-template hash "
                "(Argo does not know the stable version); label your metrics with "
                "rollouts-pod-template-hash",
                FILE,
                dropped=False,
            )
        )
    return out


def _uses_samples(metric: MetricSpec) -> bool:
    return any(
        condition is not None and "samples" in names(condition)
        for condition in (metric.failure_condition, metric.success_condition)
    )


def _provider(metric: MetricSpec, where: str, options: ExportOptions, notes: list[Note]) -> Object:
    if not isinstance(metric.provider, ProviderChoice):
        return {"prometheus": _router(metric, where, options, notes)}
    choice = metric.provider
    if choice.prometheus is not None:
        assert metric.query is not None
        prometheus: Object = {
            "address": choice.prometheus.address,
            "query": _with_args(metric.query),
            "timeout": whole_seconds(metric.timeout, at_least=1),
        }
        if choice.prometheus.headers:
            prometheus["headers"] = _headers(choice.prometheus.headers)
        return {"prometheus": prometheus}
    if choice.web is not None:
        web: Object = {
            "url": _with_args(choice.web.url),
            "method": "GET",
            "timeoutSeconds": whole_seconds(metric.timeout, at_least=1),
        }
        if choice.web.headers:
            web["headers"] = [
                {"key": k, "value": _with_args(v)} for k, v in choice.web.headers.items()
            ]
        # omitted in zerodown: the whole body is the number, which is JSONPath's root
        web["jsonPath"] = json_path(choice.web.json_path) if choice.web.json_path else "{$}"
        return {"web": web}
    assert choice.command is not None
    if metric.failure_condition or metric.success_condition:
        notes.append(
            Note(
                where,
                f"metric {metric.name!r}: a job metric passes when the Job "
                "succeeds (exit 0) and fails otherwise; its conditions are not "
                "evaluated",
                FILE,
            )
        )
    return {"job": _job(metric, choice.command, options)}


def _router(metric: MetricSpec, where: str, options: ExportOptions, notes: list[Note]) -> Object:
    assert metric.query is not None
    if options.traffic is not Traffic.NGINX:
        notes.append(
            Note(
                where,
                f"metric {metric.name!r}: the router provider is written as a "
                "query on ingress-nginx's metrics; with --traffic gateway-api, change "
                "the query to your gateway's metrics",
                FILE,
                dropped=False,
            )
        )
    if metric.window is None:
        notes.append(
            Note(
                where,
                f"metric {metric.name!r} measures the last "
                f"{go_duration(DEFAULT_WINDOW)} (zerodown: since the analysis "
                "started); set window to choose",
                FILE,
                dropped=False,
            )
        )
    if "min_samples" not in metric.model_fields_set:  # when set, it is reported as a field
        notes.append(
            Note(
                where,
                f"metric {metric.name!r}: zerodown never passes a measurement on "
                f"fewer than {metric.min_samples} requests (min_samples' default); Argo does",
                FILE,
                dropped=False,
            )
        )
    window = go_duration(metric.window if metric.window is not None else DEFAULT_WINDOW)
    return {
        "address": options.prometheus,
        "query": router_query(metric.query, window),
        "timeout": whole_seconds(metric.timeout, at_least=1),
    }


def json_path(dotted: str) -> str:
    """zerodown's data.items.0.value in Kubernetes JSONPath: {$.data.items[0].value}."""
    parts = [f"[{p}]" if p.isdigit() else f".{p}" for p in dotted.split(".")]
    return "{$" + "".join(parts) + "}"


def _headers(headers: dict[str, str]) -> list[Object]:
    return [{"key": k, "value": v} for k, v in headers.items()]


def _job(metric: MetricSpec, argv: list[str], options: ExportOptions) -> Object:
    env = [
        {"name": "ZERODOWN_SERVICE", "value": "{{args.service}}"},
        {"name": "ZERODOWN_CANARY", "value": "{{args.canary}}"},
        {"name": "ZERODOWN_STABLE", "value": "{{args.stable-hash}}"},
    ]
    box: dict[str, Any] = {
        "name": dns_label(metric.name),
        "image": image_ref(options),
        "command": [_with_args(a) for a in argv],
        "env": env,
    }
    return {
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": whole_seconds(metric.timeout, at_least=1),
            "template": {"spec": {"restartPolicy": "Never", "containers": [box]}},
        }
    }
