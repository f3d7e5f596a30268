"""The core Kubernetes objects: Services, the Ingress, and the migration Job."""

from __future__ import annotations

from zerodown.export.kubernetes.analysis import labels
from zerodown.export.kubernetes.container import PORT_NAME, database_env, image_ref, secret_name
from zerodown.export.kubernetes.model import ExportOptions, Note, Object
from zerodown.export.kubernetes.units import dns_label
from zerodown.spec.model import Spec

JOB_FILE = "migration-job.yaml"


def service(spec: Spec, name: str) -> Object:
    """Argo adds the pod-template hash to the selector of the Services a strategy names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(spec)},
        "spec": {
            "selector": {"app.kubernetes.io/name": spec.service},
            "ports": [{"name": PORT_NAME, "port": 80, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def ingress(spec: Spec, annotations: dict[str, str]) -> Object:
    """ingress-nginx in front of the stable Service, every host (add yours to the rule); Argo
    makes the canary Ingress from it."""
    metadata: Object = {"name": spec.service, "labels": labels(spec)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    backend = {"service": {"name": spec.service, "port": {"name": PORT_NAME}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            ],
        },
    }


def job_name(spec: Spec, options: ExportOptions) -> str:
    return dns_label(f"{spec.service}-migrate-{options.version}")


def migration_job(spec: Spec, options: ExportOptions, notes: list[Note]) -> Object | None:
    """`zerodown migrate start` of the newest migration file, in the release's image, as a Job
    to run to completion before the Rollout changes (expand before, contract after)."""
    if spec.migrations is None:
        return None
    if not options.migrations:
        notes.append(
            Note(
                "migrations.dir",
                f"{spec.migrations.dir} holds no migration file; no Job is written",
                JOB_FILE,
                dropped=False,
            )
        )
        return None
    newest = options.migrations[-1]
    env = database_env(spec)
    if "valueFrom" in env:
        key = env["valueFrom"]["secretKeyRef"]["key"]
        notes.append(
            Note(
                "migrations.database",
                f"DATABASE_URL comes from the Secret "
                f"{secret_name(spec)}, key {key}: `kubectl create secret generic "
                f"{secret_name(spec)} --from-literal={key}=postgresql://…`",
                JOB_FILE,
                dropped=False,
            )
        )
    if len(options.migrations) > 1:
        notes.append(
            Note(
                "migrations.dir",
                f"the Job starts the newest file, {newest.path}; "
                "zerodown starts one migration per deploy, so the earlier ones must "
                "be completed already (`zerodown migrate status`)",
                JOB_FILE,
                dropped=False,
            )
        )
    command = [
        "zerodown",
        "migrate",
        "start",
        newest.path,
        "--service",
        spec.service,
        "--version",
        options.version,
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec, options), "labels": labels(spec)},
        "spec": {
            "backoffLimit": 2,  # `migrate start` resumes where it stopped
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "migrate",
                            "image": image_ref(options),
                            "command": command,
                            "env": [env],
                        }
                    ],
                },
            },
        },
    }


def job_comments(spec: Spec, options: ExportOptions) -> list[str]:
    name = job_name(spec, options)
    return [
        "Run this Job before the Rollout changes, and wait for it:",
        f"  kubectl apply -f {JOB_FILE} && kubectl wait --for=condition=complete job/{name}"
        " --timeout=30m",
        "The image must hold zerodown and the migrations directory.",
        "`complete` (contract) goes AFTER the rollout: once `kubectl argo rollouts status "
        f"{spec.service}` says Healthy and no pod of the old version is left, run "
        "`zerodown migrate complete` with the same image and DATABASE_URL (zerodown did it at "
        "the next deploy, or after migrations.quiet_period). If the rollout aborts: "
        "`zerodown migrate rollback`.",
    ]
