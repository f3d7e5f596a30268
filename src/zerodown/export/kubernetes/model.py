"""What an export takes and gives: options in; manifests and notes out. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Object = dict[str, Any]
"""One Kubernetes object, as it is written to YAML."""


DEFAULT_PROMETHEUS = "http://prometheus.monitoring.svc:9090"


class Traffic(StrEnum):
    """The traffic router Argo Rollouts drives for a canary (`trafficRouting`)."""

    NGINX = "nginx"
    """ingress-nginx: weights on a canary Ingress Argo manages; header routes only as static
    canary-by-header annotations (Argo's nginx router ignores setHeaderRoute)."""
    GATEWAY_API = "gateway-api"
    """The Gateway API plugin (argoproj-labs/gatewayAPI) on an HTTPRoute: weights and
    setHeaderRoute steps through managedRoutes."""


@dataclass(frozen=True)
class MigrationFile:
    """A file of the spec's migrations directory, in the order zerodown starts them."""

    path: str
    """Relative to zerodown.yaml, as the Job runs it inside the image."""
    schema: str
    """The version schema the release that needs this migration reads through."""


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    image: str
    """The image repository, without a tag: registry.example/shop."""
    version: str
    """The release: the image tag and {version}."""
    traffic: Traffic = Traffic.NGINX
    namespace: str = "default"
    """Where the objects go (the Gateway API plugin names the HTTPRoute's namespace)."""
    port: int = 8080
    """The container port the app listens on: {port} and PORT."""
    prometheus: str = DEFAULT_PROMETHEUS
    """Where the router provider's queries on ingress-nginx metrics go."""
    migrations: tuple[MigrationFile, ...] = ()


@dataclass(frozen=True)
class Note:
    """Something of the spec that did not carry over as it is."""

    path: str
    """Where in zerodown.yaml, e.g. strategy.canary.steps[0].set_flag."""
    message: str
    """What happens instead and what to do about it."""
    file: str | None = None
    """The manifest file it concerns (its comments repeat it); None: no file."""
    dropped: bool = True
    """True: no counterpart at all; False: carried over with a difference."""


@dataclass(frozen=True)
class Manifest:
    """One file: its objects, preceded by comments."""

    filename: str
    objects: list[Object]
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Bundle:
    manifests: list[Manifest]
    notes: list[Note]
    facts: list[str]
    """What the export assumed (traffic router, Prometheus address, image), for the output."""
