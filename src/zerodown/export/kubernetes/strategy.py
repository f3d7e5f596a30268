"""The Rollout's `spec.strategy`: rolling, canary or blue-green, with the Services they name.

Rolling is Argo's canary without steps (a rolling update by maxSurge / maxUnavailable). A canary
names a stable and a canary Service and routes through the traffic router of ExportOptions;
blue-green names an active and a preview Service. Step indexes move when a step has no
counterpart (set_flag) or one is added (setCanaryScale), so a background analysis' startingStep
is renumbered with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zerodown.export.kubernetes import analysis
from zerodown.export.kubernetes.model import ExportOptions, Note, Object, Traffic
from zerodown.export.kubernetes.units import go_duration, whole_seconds
from zerodown.spec.analysis import AnalysisRef
from zerodown.spec.model import CanarySpec, CanaryStep, HeaderRoute, Spec

FILE = "rollout.yaml"
NGINX = "nginx.ingress.kubernetes.io"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"


def canary_service(spec: Spec) -> str:
    return f"{spec.service}-canary"


def preview_service(spec: Spec) -> str:
    return f"{spec.service}-preview"


@dataclass
class Strategy:
    strategy: Object
    spec_fields: Object = field(default_factory=dict)
    """Fields of the Rollout's spec beside strategy (minReadySeconds, progressDeadline...)."""
    services: list[str] = field(default_factory=list)
    """The Services the strategy names, besides the stable one (named after the service)."""
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    """On the stable Ingress (ingress-nginx reads the canary Ingress' behaviour from it)."""
    canary_annotations: dict[str, str] = field(default_factory=dict)
    """nginx.additionalIngressAnnotations: Argo puts them on the canary Ingress it manages."""


def build(
    spec: Spec, options: ExportOptions, exported: analysis.Templates, notes: list[Note]
) -> Strategy:
    if spec.strategy.canary is not None:
        return _canary(spec, spec.strategy.canary, options, exported, notes)
    if spec.strategy.blue_green is not None:
        return _blue_green(spec, options, exported, notes)
    rolling = spec.rolling
    fields = _deadline(rolling.progress_deadline)
    if rolling.min_ready:
        fields["minReadySeconds"] = whole_seconds(rolling.min_ready)
        if fields["minReadySeconds"] != rolling.min_ready:
            notes.append(
                Note(
                    "strategy.rolling.min_ready",
                    f"{rolling.min_ready:g}s → "
                    f"{fields['minReadySeconds']}s: Kubernetes counts whole seconds",
                    FILE,
                    dropped=False,
                )
            )
    return Strategy(
        {"canary": {"maxSurge": rolling.max_surge, "maxUnavailable": rolling.max_unavailable}},
        fields,
    )


def _deadline(seconds: float) -> Object:
    """zerodown fails a rollout that makes no progress for this long; Argo aborts it with
    progressDeadlineAbort (without it, Argo only marks the Rollout degraded)."""
    return {
        "progressDeadlineSeconds": whole_seconds(seconds, at_least=1),
        "progressDeadlineAbort": True,
    }


def _blue_green(
    spec: Spec, options: ExportOptions, exported: analysis.Templates, notes: list[Note]
) -> Strategy:
    bg = spec.strategy.blue_green
    assert bg is not None
    out: Object = {
        "activeService": spec.service,
        "previewService": preview_service(spec),
        # zerodown switches after auto_promote_after even with auto_promote off; Argo ignores
        # autoPromotionSeconds unless autoPromotionEnabled
        "autoPromotionEnabled": bg.auto_promote or bg.auto_promote_after is not None,
        "scaleDownDelaySeconds": whole_seconds(bg.scale_down_delay),
    }
    if bg.auto_promote_after is not None:
        out["autoPromotionSeconds"] = whole_seconds(bg.auto_promote_after, at_least=1)
    if bg.preview_listen is not None:
        notes.append(
            Note(
                "strategy.blue_green.preview_listen",
                f"{bg.preview_listen} becomes "
                f"the Service {preview_service(spec)}; reach it with `kubectl "
                f"port-forward svc/{preview_service(spec)} {bg.preview_listen.rpartition(':')[2]}:80` "
                "or an Ingress of "
                "your own",
                FILE,
                dropped=False,
            )
        )
    for name, key, target in (
        ("pre_promotion_analysis", "prePromotionAnalysis", preview_service(spec)),
        ("post_promotion_analysis", "postPromotionAnalysis", spec.service),
    ):
        ref = getattr(bg, name)
        if ref is None:
            continue
        where = f"strategy.blue_green.{name}"
        block = analysis.reference(
            ref,
            exported,
            spec=spec,
            options=options,
            target=target,
            where=where,
            notes=notes,
            file=FILE,
        )
        if block is not None:
            out[key] = block
        if name == "pre_promotion_analysis" and _uses_router(ref.templates, spec):
            notes.append(
                Note(
                    where,
                    f"router metrics watch {target}, which gets ingress "
                    "traffic only if you send it some (zerodown's preview listener "
                    "was its counterpart)",
                    FILE,
                    dropped=False,
                )
            )
    return Strategy({"blueGreen": out}, _deadline(bg.progress_deadline), [preview_service(spec)])


def _uses_router(templates: list[str], spec: Spec) -> bool:
    return any(
        m.provider_kind == "router" for t in templates for m in spec.analysis.templates[t].metrics
    )


def _canary(
    spec: Spec,
    canary: CanarySpec,
    options: ExportOptions,
    exported: analysis.Templates,
    notes: list[Note],
) -> Strategy:
    out: Object = {"canaryService": canary_service(spec), "stableService": spec.service}
    result = Strategy({"canary": out}, _deadline(canary.progress_deadline), [canary_service(spec)])
    writer = _Steps(spec, canary, options, exported, notes, result)
    for i, step in enumerate(canary.steps):
        writer.add(i, step)
    if writer.steps:
        out["steps"] = writer.steps
    out["trafficRouting"] = _traffic(spec, options, writer.routes, result.canary_annotations)
    if canary.analysis is not None:
        block = writer.analysis(canary.analysis, "strategy.canary.analysis")
        if block is not None:
            if canary.analysis.starting_step is not None:
                start = canary.analysis.starting_step
                block["startingStep"] = writer.position.get(start, len(writer.steps))
            out["analysis"] = block
    if canary.sticky is not None:
        _sticky(canary, options, result, notes)
    return result


@dataclass
class _Steps:
    """Argo's steps for zerodown's, in order; `position` maps a zerodown step's index to the
    index of the Argo step that starts it."""

    spec: Spec
    canary: CanarySpec
    options: ExportOptions
    exported: analysis.Templates
    notes: list[Note]
    result: Strategy
    steps: list[Object] = field(default_factory=list)
    routes: list[Object] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    weight: int = 0
    pinned: bool = False
    """A setCanaryScale {replicas: 1} holds a canary pod for a header route at weight 0."""

    def __post_init__(self) -> None:
        if self.canary.canary_scale != "match_weight":
            self.steps.append({"setCanaryScale": {"replicas": self.canary.canary_scale}})

    def add(self, index: int, step: CanaryStep) -> None:
        where = f"strategy.canary.steps[{index}]"
        self.position[index] = len(self.steps)
        if step.set_weight is not None:
            self._weight(step.set_weight)
        elif step.pause is not None:
            duration = step.pause.duration
            self.steps.append(
                {"pause": {} if duration is None else {"duration": go_duration(duration)}}
            )
        elif step.analysis is not None:
            block = self.analysis(step.analysis, f"{where}.analysis")
            if block is not None:
                self.steps.append({"analysis": block})
        elif step.set_header_route is not None:
            self._header_route(step.set_header_route, index, f"{where}.set_header_route")
        # set_flag: reported with the spec's other fields that have no counterpart

    def analysis(self, ref: AnalysisRef, where: str) -> Object | None:
        return analysis.reference(
            ref,
            self.exported,
            spec=self.spec,
            options=self.options,
            target=canary_service(self.spec),
            where=where,
            notes=self.notes,
            file=FILE,
        )

    def _weight(self, weight: int) -> None:
        self.steps.append({"setWeight": weight})
        self.weight = weight
        if self.pinned and weight > 0:
            self.steps.append({"setCanaryScale": {"matchTrafficWeight": True}})
            self.pinned = False

    def _header_route(self, route: HeaderRoute, index: int, where: str) -> None:
        if self.options.traffic is Traffic.GATEWAY_API:
            step: Object | None = _gateway_route(route, index, where, self.notes)
        else:
            step = None
            if not _nginx_route(route, self.result.canary_annotations, where, self.notes):
                return
        if self.weight == 0 and self.canary.canary_scale == "match_weight" and not self.pinned:
            # zerodown runs one canary instance for a header route at weight 0; so does this
            self.steps.append({"setCanaryScale": {"replicas": 1}})
            self.pinned = True
        if step is not None:
            self.steps.append({"setHeaderRoute": step})
            self.routes.append({"name": step["name"]})


def _traffic(
    spec: Spec, options: ExportOptions, routes: list[Object], annotations: dict[str, str]
) -> Object:
    if options.traffic is Traffic.NGINX:
        nginx: Object = {"stableIngress": spec.service}
        if annotations:
            nginx["additionalIngressAnnotations"] = dict(annotations)
        return {"nginx": nginx}
    plugin = {"httpRoute": spec.service, "namespace": options.namespace}
    traffic: Object = {"plugins": {GATEWAY_PLUGIN: plugin}}
    if routes:
        traffic["managedRoutes"] = routes
    return traffic


def _gateway_route(route: HeaderRoute, index: int, where: str, notes: list[Note]) -> Object:
    if route.header is not None:
        match = {"headerName": route.header, "headerValue": {"exact": route.value}}
    else:
        assert route.cookie is not None
        pattern = rf"(^|;\s*){re.escape(route.cookie)}={re.escape(route.value)}(;|$)"
        match = {"headerName": "Cookie", "headerValue": {"regex": pattern}}
        notes.append(
            Note(
                where,
                "the cookie is matched by a regex on the Cookie header: check that your "
                "Gateway API implementation supports RegularExpression header matches",
                FILE,
                dropped=False,
            )
        )
    return {"name": f"header-route-{index}", "match": [match]}


def _nginx_route(
    route: HeaderRoute, annotations: dict[str, str], where: str, notes: list[Note]
) -> bool:
    """Argo's nginx router ignores setHeaderRoute: ingress-nginx's canary-by-* annotations on
    the canary Ingress route instead, for the whole rollout. False: the route is left out."""
    if any(k.startswith("canary-by-") for k in annotations):
        notes.append(
            Note(
                where,
                "ingress-nginx routes one header or cookie to the canary; this second route "
                "is left out",
                FILE,
            )
        )
        return False
    if route.header is not None:
        annotations["canary-by-header"] = route.header
        annotations["canary-by-header-value"] = route.value
    elif route.value == "always":
        assert route.cookie is not None
        annotations["canary-by-cookie"] = route.cookie
    else:
        notes.append(
            Note(
                where,
                "ingress-nginx sends a cookie to the canary only when its value is 'always', "
                f"not {route.value!r}; left out (use a header, or --traffic gateway-api)",
                FILE,
            )
        )
        return False
    notes.append(
        Note(
            where,
            "ingress-nginx has no header-route step (Argo's nginx router ignores "
            "setHeaderRoute): the route is an annotation of the canary Ingress, in force "
            "whenever canary pods run, not from this step on",
            FILE,
            dropped=False,
        )
    )
    return True


def _sticky(
    canary: CanarySpec, options: ExportOptions, result: Strategy, notes: list[Note]
) -> None:
    sticky = canary.sticky
    assert sticky is not None
    if options.traffic is Traffic.GATEWAY_API:
        notes.append(
            Note(
                "strategy.canary.sticky",
                "the Gateway API splits canary traffic per "
                "request; users are not kept on one release (use a header route)",
                FILE,
            )
        )
        return
    if sticky.cookie is None:
        return  # sticky.header: reported with the fields that have no counterpart
    result.ingress_annotations.update(
        {
            f"{NGINX}/affinity": "cookie",
            f"{NGINX}/session-cookie-name": sticky.cookie,
            f"{NGINX}/affinity-canary-behavior": "sticky",
        }
    )
    notes.append(
        Note(
            "strategy.canary.sticky",
            "ingress-nginx cookie affinity keeps a user on "
            "the release that first served them; unlike zerodown's buckets, users do "
            "not move to the canary as its weight grows",
            FILE,
            dropped=False,
        )
    )
