"""`export(spec, options)`: the manifests of a zerodown.yaml for Kubernetes + Argo Rollouts.

Pure: a Spec and options in, a Bundle of objects (dicts) and notes out; the caller writes files.
Every spec field either lands in an object or yields a Note: the `Reported` fields of
coverage.FIELDS that the spec sets, and the values the builders cannot carry as they are.
"""

from __future__ import annotations

from zerodown.core.errors import SpecError
from zerodown.export.kubernetes import analysis, coverage, objects, strategy
from zerodown.export.kubernetes.container import container, grace_seconds, image_ref
from zerodown.export.kubernetes.model import (
    Bundle,
    ExportOptions,
    Manifest,
    Note,
    Object,
    Traffic,
)
from zerodown.spec.model import Spec

ROLLOUT_FILE = "rollout.yaml"


MAX_NAME = 63
"""A Service's name is a DNS label (RFC 1035): at most 63 characters."""


def export(spec: Spec, options: ExportOptions) -> Bundle:
    """Raises SpecError (field `service`) when a name the export derives cannot be a Service's."""
    notes: list[Note] = [
        Note(n.path, n.message, n.file or _file_of(n.path)) for n in coverage.reported(spec)
    ]
    templates = analysis.templates(spec, options, notes)
    plan = strategy.build(spec, options, templates, notes)
    _check_names(spec.service, plan.services)
    rollout = _rollout(spec, options, plan, notes)
    services = [objects.service(spec, spec.service)]
    services += [objects.service(spec, name) for name in plan.services]
    manifests = [Manifest(ROLLOUT_FILE, [rollout]), Manifest("services.yaml", services)]
    if options.traffic is Traffic.NGINX:
        manifests.append(
            Manifest("ingress.yaml", [objects.ingress(spec, plan.ingress_annotations)])
        )
    if templates.objects:
        manifests.append(Manifest(analysis.FILE, templates.objects))
    job = objects.migration_job(spec, options, notes)
    if job is not None:
        manifests.append(Manifest(objects.JOB_FILE, [job], objects.job_comments(spec, options)))
    notes.append(_listen_note(spec, options))
    return Bundle(_with_comments(manifests, notes), notes, _facts(spec, options, manifests))


def _check_names(service: str, names: list[str]) -> None:
    for name in names:
        if len(name) > MAX_NAME:
            shorter = MAX_NAME - (len(name) - len(service))
            raise SpecError(
                f"the Service {name!r} would be {len(name)} characters, over Kubernetes' "
                f"{MAX_NAME}; shorten the service name to {shorter} characters or fewer",
                field="service",
            )


def _file_of(path: str) -> str:
    if path.startswith("analysis."):
        return analysis.FILE
    if path.startswith("migrations"):
        return objects.JOB_FILE
    return ROLLOUT_FILE


def _rollout(
    spec: Spec, options: ExportOptions, plan: strategy.Strategy, notes: list[Note]
) -> Object:
    pod_labels = {"app.kubernetes.io/name": spec.service}
    version_label = _label_value(options.version)
    if version_label:
        pod_labels["app.kubernetes.io/version"] = version_label
    return {
        "apiVersion": analysis.API,
        "kind": "Rollout",
        "metadata": {"name": spec.service, "labels": analysis.labels(spec)},
        "spec": {
            "replicas": spec.instances,
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.service}},
            **plan.spec_fields,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "terminationGracePeriodSeconds": grace_seconds(spec),
                    "containers": [container(spec, options, notes)],
                },
            },
            "strategy": plan.strategy,
        },
    }


def _label_value(version: str) -> str:
    """A label value: letters, digits and - _ . between two letters or digits."""
    return version.replace("+", "_").rstrip("-_.")


def _listen_note(spec: Spec, options: ExportOptions) -> Note:
    if options.traffic is Traffic.NGINX:
        how = (
            f"through ingress-nginx: the Ingress {spec.service} answers every host; add "
            "yours to its rule"
        )
    else:
        how = (
            f"through your HTTPRoute {spec.service} (not written here): it must send to the "
            f"Services {spec.service} and {strategy.canary_service(spec)}, Argo sets the "
            "weights"
        )
    return Note(
        "router.listen",
        f"clients that used {spec.router.listen} come in {how}",
        ROLLOUT_FILE,
        dropped=False,
    )


def _facts(spec: Spec, options: ExportOptions, manifests: list[Manifest]) -> list[str]:
    if options.traffic is Traffic.GATEWAY_API:
        router = (
            f"Gateway API plugin {strategy.GATEWAY_PLUGIN} (HTTPRoute {spec.service}, "
            "managedRoutes for header routes)"
            if spec.strategy.canary is not None
            else f"your HTTPRoute {spec.service} to the Service {spec.service}"
        )
    elif spec.strategy.canary is not None:
        router = "ingress-nginx (trafficRouting.nginx; Argo manages the canary Ingress)"
    else:
        router = f"ingress-nginx (the Ingress {spec.service} to the Service {spec.service})"
    facts = [
        f"image: {image_ref(options)}",
        f"strategy: {spec.strategy.name}",
        f"traffic router: {router}",
    ]
    if any(
        m.provider_kind == "router" for t in spec.analysis.templates.values() for m in t.metrics
    ):
        facts.append(
            f"router metrics: PromQL on ingress-nginx's nginx_ingress_controller_* "
            f"metrics, queried at {options.prometheus}"
        )
    facts.append("files: " + ", ".join(m.filename for m in manifests))
    return facts


def _with_comments(manifests: list[Manifest], notes: list[Note]) -> list[Manifest]:
    out = []
    for manifest in manifests:
        mine = [n for n in notes if n.file == manifest.filename]
        comments = list(manifest.comments)
        dropped = [n for n in mine if n.dropped]
        changed = [n for n in mine if not n.dropped]
        if dropped:
            comments += ["", "No counterpart in Kubernetes / Argo Rollouts (not exported):"]
            comments += [f"- {n.path}: {n.message}" for n in dropped]
        if changed:
            comments += ["", "Exported with a difference:"]
            comments += [f"- {n.path}: {n.message}" for n in changed]
        out.append(Manifest(manifest.filename, manifest.objects, comments))
    return out
