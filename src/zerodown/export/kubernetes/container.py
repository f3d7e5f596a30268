"""The app's container: command, environment, probes, and drain as a preStop sleep.

Kubernetes' termination runs preStop first and counts it inside terminationGracePeriodSeconds, so
the grace period is drain + stop_timeout: the pod leaves the Service's endpoints, sleeps `drain`
while in-flight requests finish, then gets SIGTERM and `stop_timeout` before SIGKILL, as under
zerodown.
"""

from __future__ import annotations

import re
from typing import Any

from zerodown.export.kubernetes.model import ExportOptions, Note, Object
from zerodown.export.kubernetes.units import is_whole, whole_seconds
from zerodown.spec.model import ProbeSpec, Spec

PORT_NAME = "http"
PROBE_FIELDS = {
    "startup": "startupProbe",
    "liveness": "livenessProbe",
    "readiness": "readinessProbe",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(text: str, options: ExportOptions) -> str:
    return text.replace("{port}", str(options.port)).replace("{version}", options.version)


def image_ref(options: ExportOptions) -> str:
    return f"{options.image}:{options.version}"


def container(spec: Spec, options: ExportOptions, notes: list[Note]) -> Object:
    run = spec.run
    box: Object = {
        "name": spec.service,
        "image": image_ref(options),
        "command": [fill(arg, options) for arg in run.command],
        "ports": [{"name": PORT_NAME, "containerPort": options.port, "protocol": "TCP"}],
        "env": environment(spec, options),
    }
    if run.workdir.startswith("/"):
        box["workingDir"] = run.workdir
    elif run.workdir not in (".", "./"):
        notes.append(
            Note(
                "run.workdir",
                f"{run.workdir!r} is relative to zerodown.yaml on the host; the container starts "
                "in the image's WORKDIR: set it there",
                "rollout.yaml",
            )
        )
    if run.stop_signal != "SIGTERM":
        notes.append(
            Note(
                "run.stop_signal",
                f"Kubernetes stops a container with the image's STOPSIGNAL (SIGTERM unless set): "
                f"put `STOPSIGNAL {run.stop_signal}` in the Dockerfile",
                "rollout.yaml",
            )
        )
    drain = whole_seconds(run.drain)
    if drain:
        box["lifecycle"] = {"preStop": {"sleep": {"seconds": drain}}}
    if not is_whole(run.drain):
        notes.append(
            Note(
                "run.drain",
                f"{run.drain:g}s → {drain}s: preStop sleeps whole seconds",
                "rollout.yaml",
                dropped=False,
            )
        )
    for kind, field in PROBE_FIELDS.items():
        probe = getattr(spec.probes, kind)
        if probe is not None:
            box[field] = _probe(probe, f"probes.{kind}", options, notes)
    return box


def grace_seconds(spec: Spec) -> int:
    return whole_seconds(spec.run.drain) + whole_seconds(spec.run.stop_timeout, at_least=1)


def environment(spec: Spec, options: ExportOptions) -> list[Object]:
    env: list[Object] = (
        [] if "PORT" in spec.run.env else [{"name": "PORT", "value": str(options.port)}]
    )
    env += [{"name": k, "value": fill(v, options)} for k, v in spec.run.env.items()]
    if spec.migrations is not None and options.migrations:
        env += [
            database_env(spec),
            {"name": "ZERODOWN_DB_SCHEMA", "value": options.migrations[-1].schema},
            {"name": "PGAPPNAME", "value": f"zerodown:{spec.service}:{options.version}"},
        ]
    return env


def database_env(spec: Spec) -> Object:
    """DATABASE_URL as the controller gives it; `${VAR}` comes from a Secret named after the
    service, key VAR, instead of the controller's environment."""
    assert spec.migrations is not None
    url = spec.migrations.database
    match = _VAR.fullmatch(url.strip())
    if match is None:
        return {"name": "DATABASE_URL", "value": url}
    return {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": secret_name(spec), "key": match.group(1)}},
    }


def secret_name(spec: Spec) -> str:
    return f"{spec.service}-database"


def _probe(probe: ProbeSpec, path: str, options: ExportOptions, notes: list[Note]) -> Object:
    out: dict[str, Any] = {}
    if probe.http is not None:
        out["httpGet"] = {"path": probe.http, "port": PORT_NAME}
    elif probe.tcp is not None:
        out["tcpSocket"] = {"port": probe.tcp.port if probe.tcp.port else PORT_NAME}
    else:
        assert probe.exec is not None
        out["exec"] = {"command": list(probe.exec)}  # as under zerodown: not filled in
    for name, field, value, least in (
        ("initial_delay", "initialDelaySeconds", probe.initial_delay, 0),
        ("period", "periodSeconds", probe.period, 1),
        ("timeout", "timeoutSeconds", probe.timeout, 1),
    ):
        out[field] = whole_seconds(value, at_least=least)
        if not is_whole(value, at_least=least):
            notes.append(
                Note(
                    f"{path}.{name}",
                    f"{value:g}s → {out[field]}s: Kubernetes counts probe times in whole seconds"
                    + (", at least 1" if least else ""),
                    "rollout.yaml",
                    dropped=False,
                )
            )
    out["successThreshold"] = probe.success_threshold
    out["failureThreshold"] = probe.failure_threshold
    return out
