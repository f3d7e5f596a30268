"""Where every field of zerodown.yaml goes in Kubernetes + Argo Rollouts, or why it goes nowhere.

One entry per field path of the spec models (`[]` a list item, `*` a map value). The export reports
each `Reported` field the spec sets (`reported`), so nothing is dropped silently; a `Maps` field is
carried by the exporter's code, and one marked `partly` has values the exporter reports where it
cannot carry them (a probe period under a second, a step Argo cannot run). A field of a `Reported`
parent needs no entry. tests/unit/export/test_k8s_coverage.py walks the models and fails for a
field missing here, so a new spec field must be classified before it ships; docs/kubernetes.md
shows this table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from zerodown.export.kubernetes.model import Note


@dataclass(frozen=True)
class Maps:
    to: str
    partly: bool = False
    """Some values have no counterpart; the exporter reports those."""


@dataclass(frozen=True)
class Reported:
    why: str
    """What happens instead and what the team can do."""


Disposition = Maps | Reported

FIELDS: dict[str, Disposition] = {
    "service": Maps("metadata.name of every object; label app.kubernetes.io/name"),
    "instances": Maps("Rollout spec.replicas"),
    "run": Maps("the Rollout's pod template: one container"),
    "run.command": Maps("container command ({port}, {version} filled in)"),
    "run.env": Maps("container env (plus PORT)"),
    "run.workdir": Maps("container workingDir when absolute", partly=True),
    "run.stop_signal": Maps("SIGTERM is Kubernetes' own", partly=True),
    "run.drain": Maps("lifecycle.preStop.sleep.seconds (whole seconds)", partly=True),
    "run.drain_upgraded": Reported(
        "upgraded connections (WebSockets) end with the pod: raise terminationGracePeriodSeconds "
        "and close them in the app's preStop so clients reconnect"
    ),
    "run.stop_timeout": Maps("terminationGracePeriodSeconds = drain + stop_timeout"),
    "run.artifact": Reported(
        "the image is the artifact in Kubernetes: build the archive into it (--image)"
    ),
    # the container platform's fields (docs/containers.md)
    "run.image": Reported("--image and --version name the image; run.image is not read"),
    "run.port": Reported("--port sets the container port; run.port is not read"),
    "run.volumes": Reported("add volumes and volumeMounts to the pod template yourself"),
    "run.network": Reported("a pod has its own network: host or bridge does not apply"),
    "probes": Maps("container probes"),
    "probes.startup": Maps("startupProbe"),
    "probes.liveness": Maps("livenessProbe"),
    "probes.readiness": Maps("readinessProbe"),
    **{
        f"probes.{kind}.{name}": value
        for kind in ("startup", "liveness", "readiness")
        for name, value in {
            "http": Maps("httpGet {path, port}"),
            "tcp": Maps("tcpSocket"),
            "tcp.port": Maps("tcpSocket.port (default: the container port)"),
            "exec": Maps("exec.command"),
            "initial_delay": Maps("initialDelaySeconds (whole seconds)", partly=True),
            "period": Maps("periodSeconds (whole seconds, at least 1)", partly=True),
            "timeout": Maps("timeoutSeconds (whole seconds, at least 1)", partly=True),
            "success_threshold": Maps("successThreshold"),
            "failure_threshold": Maps("failureThreshold"),
        }.items()
    },
    "router": Maps("the ingress controller: an Ingress (nginx) or your HTTPRoute (gateway-api)"),
    "router.kind": Reported(
        "the router is the cluster's ingress controller or gateway (see --traffic)"
    ),
    "router.listen": Maps("the Ingress / HTTPRoute in front of the stable Service", partly=True),
    "router.admin_listen": Reported(
        "ingress-nginx serves its own metrics (port 10254); point Prometheus at it"
    ),
    "router.header_timeout": Reported(
        "ingress-nginx sets it for all Ingresses: client-header-timeout in its ConfigMap"
    ),
    "router.attach": Reported(
        "a router the team runs (HAProxy, nginx) is the cluster's ingress controller there: "
        "the traffic router Argo Rollouts drives (see --traffic)"
    ),
    "router.workers": Reported(
        "the ingress controller runs its own workers (ingress-nginx: worker-processes in its "
        "ConfigMap); scale its replicas for more"
    ),
    "router.tls": Reported(
        "TLS is the ingress controller's: put the certificates in a Secret and name it in the "
        "Ingress spec.tls (or the Gateway's listener); cert-manager can keep them renewed"
    ),
    "platform": Reported("Kubernetes is the platform: the Rollout's pods replace local processes"),
    "state": Reported("Argo Rollouts keeps a rollout's state in the Rollout's status"),
    "api": Reported(
        "the controller's API is the Kubernetes API: reads are governed by RBAC; "
        "use `kubectl argo rollouts get rollout`"
    ),
    "strategy": Maps("Rollout spec.strategy"),
    "strategy.rolling": Maps("spec.strategy.canary without steps (Argo's rolling update)"),
    "strategy.rolling.max_surge": Maps("canary.maxSurge"),
    "strategy.rolling.max_unavailable": Maps("canary.maxUnavailable"),
    "strategy.rolling.min_ready": Maps("spec.minReadySeconds (whole seconds)", partly=True),
    "strategy.rolling.progress_deadline": Maps(
        "spec.progressDeadlineSeconds, progressDeadlineAbort"
    ),
    "strategy.blue_green": Maps("spec.strategy.blueGreen"),
    "strategy.blue_green.preview_listen": Maps(
        "previewService (reach it with kubectl port-forward)", partly=True
    ),
    "strategy.blue_green.auto_promote": Maps("blueGreen.autoPromotionEnabled"),
    "strategy.blue_green.auto_promote_after": Maps(
        "blueGreen.autoPromotionSeconds, with autoPromotionEnabled (zerodown switches after it)"
    ),
    "strategy.blue_green.scale_down_delay": Maps("blueGreen.scaleDownDelaySeconds"),
    "strategy.blue_green.progress_deadline": Maps(
        "spec.progressDeadlineSeconds, progressDeadlineAbort"
    ),
    "strategy.blue_green.pre_promotion_analysis": Maps("blueGreen.prePromotionAnalysis"),
    "strategy.blue_green.post_promotion_analysis": Maps("blueGreen.postPromotionAnalysis"),
    "strategy.canary": Maps("spec.strategy.canary with canaryService and stableService"),
    "strategy.canary.steps": Maps("canary.steps", partly=True),
    "strategy.canary.steps[].set_weight": Maps("setWeight"),
    "strategy.canary.steps[].pause": Maps("pause"),
    "strategy.canary.steps[].pause.duration": Maps("pause.duration (omitted: until promoted)"),
    "strategy.canary.steps[].set_header_route": Maps(
        "setHeaderRoute (gateway-api) or canary-by-header annotations (nginx)", partly=True
    ),
    "strategy.canary.steps[].set_header_route.header": Maps("match[].headerName"),
    "strategy.canary.steps[].set_header_route.cookie": Maps(
        "match on the Cookie header (gateway-api regex) or canary-by-cookie (nginx)", partly=True
    ),
    "strategy.canary.steps[].set_header_route.value": Maps("match[].headerValue.exact"),
    "strategy.canary.steps[].analysis": Maps("an analysis step (inline)"),
    "strategy.canary.steps[].hold": Reported(
        "Argo Rollouts has no step that holds traffic; left out (the steps around it are kept)"
    ),
    "strategy.canary.steps[].set_flag": Reported(
        "Argo Rollouts has no flag step; change the flag from your pipeline (`zerodown flags`) "
        "once the rollout reaches this step, and revert it on abort"
    ),
    "strategy.canary.canary_scale": Maps(
        "setCanaryScale {replicas} as the first step (the pods start with the rollout, not at "
        "the first weight)"
    ),
    "strategy.canary.sticky": Maps("ingress-nginx cookie affinity", partly=True),
    "strategy.canary.sticky.cookie": Maps("nginx.ingress.kubernetes.io/session-cookie-name"),
    "strategy.canary.sticky.header": Reported(
        "ingress-nginx keeps users on a release by cookie only; the header is not used"
    ),
    "strategy.canary.progress_deadline": Maps(
        "spec.progressDeadlineSeconds, progressDeadlineAbort"
    ),
    "strategy.canary.analysis": Maps("canary.analysis (background)"),
    "analysis": Maps("AnalysisTemplates"),
    "analysis.templates": Maps("one AnalysisTemplate each, named <service>-<template>"),
    "analysis.templates.*.metrics": Maps("spec.metrics", partly=True),
    "analysis.templates.*.metrics[].name": Maps("metrics[].name"),
    "analysis.templates.*.metrics[].provider": Maps(
        "router: prometheus on ingress-nginx metrics; prometheus, web: the same; command: job"
    ),
    "analysis.templates.*.metrics[].provider.prometheus": Maps("provider.prometheus"),
    "analysis.templates.*.metrics[].provider.prometheus.address": Maps("prometheus.address"),
    "analysis.templates.*.metrics[].provider.prometheus.headers": Maps("prometheus.headers"),
    "analysis.templates.*.metrics[].provider.web": Maps("provider.web (GET)"),
    "analysis.templates.*.metrics[].provider.web.url": Maps("web.url"),
    "analysis.templates.*.metrics[].provider.web.json_path": Maps("web.jsonPath"),
    "analysis.templates.*.metrics[].provider.web.headers": Maps("web.headers"),
    "analysis.templates.*.metrics[].provider.command": Maps(
        "provider.job: a Job running the command in the release's image", partly=True
    ),
    "analysis.templates.*.metrics[].query": Maps(
        "prometheus.query (router: PromQL on nginx_ingress_controller_* metrics)", partly=True
    ),
    "analysis.templates.*.metrics[].interval": Maps("metrics[].interval"),
    "analysis.templates.*.metrics[].count": Maps("metrics[].count"),
    "analysis.templates.*.metrics[].initial_delay": Maps(
        "metrics[].initialDelay (zerodown's default wait made explicit)"
    ),
    "analysis.templates.*.metrics[].window": Maps("the range of the router metric's PromQL"),
    "analysis.templates.*.metrics[].timeout": Maps(
        "prometheus.timeout, web.timeoutSeconds, job activeDeadlineSeconds"
    ),
    "analysis.templates.*.metrics[].failure_condition": Maps(
        "metrics[].failureCondition (result[0] for Prometheus vectors)", partly=True
    ),
    "analysis.templates.*.metrics[].success_condition": Maps(
        "metrics[].successCondition (result[0] for Prometheus vectors)", partly=True
    ),
    "analysis.templates.*.metrics[].failure_limit": Maps("metrics[].failureLimit"),
    "analysis.templates.*.metrics[].inconclusive_limit": Maps("metrics[].inconclusiveLimit"),
    "analysis.templates.*.metrics[].consecutive_error_limit": Maps(
        "metrics[].consecutiveErrorLimit"
    ),
    "analysis.templates.*.metrics[].min_samples": Reported(
        "Argo judges a measurement whatever traffic it saw; put a minimum into the PromQL "
        "(`... and on() sum(increase(...)) >= N`)"
    ),
    "analysis.templates.*.metrics[].compare": Reported(
        "Argo measures one query, without a baseline: the metric is left out; write the "
        "comparison into one PromQL query (canary / stable) or use Argo's Kayenta provider"
    ),
    "analysis.templates.*.metrics[].max_increase": Reported(
        "belongs to compare: baseline, which Argo has no counterpart for"
    ),
    "analysis.templates.*.metrics[].judge": Reported(
        "no Mann-Whitney judge in Argo; Argo's Kayenta provider does this kind of comparison"
    ),
    "analysis.templates.*.dry_run": Maps("spec.dryRun[].metricName"),
    "gate": Reported(
        "no test gate in Argo Rollouts: run the command in CI before the image is pushed"
    ),
    "smoke": Reported(
        "no smoke step in Argo Rollouts: write the checks as a web or job metric of a "
        "prePromotionAnalysis (blue-green) or an analysis step; through-the-router smoke after "
        "promotion belongs to your pipeline"
    ),
    "notify": Reported(
        "Argo Rollouts notifies through argo-rollouts-notification-configmap (triggers such as "
        "on-rollout-aborted); configure a webhook service there"
    ),
    "migrations": Maps("a Job that runs `zerodown migrate start` before the rollout"),
    "migrations.database": Maps("DATABASE_URL of the Job and the pods (a Secret for ${VAR})"),
    "migrations.dir": Maps("the migration file the Job starts"),
    "migrations.alembic": Reported(
        "the Job starts zerodown migration files only: run the Alembic revisions with "
        "`alembic upgrade` in a Job of their own (zerodown's expand-contract reading of them "
        "stays with zerodown)"
    ),
    "migrations.allow": Reported(
        "what zerodown lets through is decided when it reads the migrations; nothing in "
        "Kubernetes checks it"
    ),
    "migrations.quiet_period": Reported(
        "run `zerodown migrate complete` from your pipeline once the rollout is healthy and no "
        "old pod is left (`kubectl argo rollouts status`)"
    ),
    "compat": Reported(
        "no compatibility check in Argo Rollouts: check that the new release accepts the old "
        "one's sessions and tokens in CI, or in a job metric of a prePromotionAnalysis"
    ),
    "flag_guards": Reported(
        "Argo analyses releases, not flag variants: keep the flag guard on zerodown's flag "
        "service or in your flag system"
    ),
    "caution": Reported(
        "Argo Rollouts does not become more careful by itself: for a migration whose contract "
        "cannot be undone, write the longer pauses and a manual pause step into the rollout, "
        "and run `zerodown migrate complete` by hand"
    ),
    "hosts": Reported(
        "the cluster's nodes are the hosts: the scheduler spreads the pods (add a "
        "topologySpreadConstraint to keep them on different nodes)"
    ),
    "ssh": Reported("Kubernetes reaches its nodes itself: no SSH settings carry over"),
}

# Sub-models whose fields are all covered by the entry of the field that holds them.
for _ref in (
    "strategy.blue_green.pre_promotion_analysis",
    "strategy.blue_green.post_promotion_analysis",
    "strategy.canary.steps[].analysis",
    "strategy.canary.analysis",
):
    FIELDS[f"{_ref}.templates"] = Maps("analysis templates[].templateName")
    FIELDS[f"{_ref}.dry_run"] = Maps("dryRun[].metricName")
    FIELDS[f"{_ref}.starting_step"] = (
        Maps("analysis.startingStep (renumbered if steps are left out)")
        if _ref == "strategy.canary.analysis"
        else Reported("an analysis here has no steps to start from; it is ignored")
    )


def reported(spec: BaseModel) -> Iterator[Note]:
    """A note for every `Reported` field the spec sets, with its place in the file."""
    yield from _walk(spec, "", "")


def _walk(model: BaseModel, key: str, where: str) -> Iterator[Note]:
    for name in type(model).model_fields:
        path_key, path = f"{key}{name}", f"{where}{name}"
        disposition = FIELDS[path_key]
        value = getattr(model, name)
        if isinstance(disposition, Reported):
            if name in model.model_fields_set and value not in (None, [], {}):
                yield Note(path, disposition.why)
            continue
        for sub_key, sub_where, item in _children(value, path_key, path):
            yield from _walk(item, sub_key, sub_where)


def _children(value: Any, key: str, where: str) -> Iterator[tuple[str, str, BaseModel]]:
    if isinstance(value, BaseModel):
        yield f"{key}.", f"{where}.", value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, BaseModel):
                yield f"{key}[].", f"{where}[{i}].", item
    elif isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, BaseModel):
                yield f"{key}.*.", f"{where}.{name}.", item


_PROBE = re.compile(r"^probes\.(startup|liveness|readiness)\.")


def markdown_table() -> str:
    """FIELDS as the table of docs/kubernetes.md (probe fields once, as probes.<kind>.…)."""
    rows = ["| zerodown.yaml | Kubernetes / Argo Rollouts |", "|---|---|"]
    seen: set[str] = set()
    for path, disposition in FIELDS.items():
        shown = _PROBE.sub("probes.<kind>.", path)
        if shown in seen:
            continue
        seen.add(shown)
        if isinstance(disposition, Reported):
            where = f"**reported**: {disposition.why}"
        else:
            where = disposition.to + (
                "; values it cannot carry are reported" if disposition.partly else ""
            )
        cell = where.replace("|", "\\|")  # a pipe would end the cell
        rows.append(f"| `{shown}` | {cell} |")
    return "\n".join(rows) + "\n"
