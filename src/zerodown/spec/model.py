"""The models of zerodown.yaml: strict (unknown fields are errors) and frozen.

Probe fields default as in Kubernetes. Rolling updates default to max_unavailable 0 (Kubernetes
says 25%): a tool whose promise is zero failed requests should not give up capacity unless asked.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from zerodown.flags.steps import SetFlagStep
from zerodown.spec.analysis import AnalysisRef, AnalysisSpec, is_bounded, resolve
from zerodown.spec.caution import CautionSpec
from zerodown.spec.compat import CompatSpec
from zerodown.spec.gates import GateSpec, SmokeSpec
from zerodown.spec.guards import FlagGuardSpec
from zerodown.spec.hosts import (
    MAX_HOSTS,
    HostSpec,
    SshSpec,
    check_hosts,
    check_platform,
    default_platform,
)
from zerodown.spec.notify import NotifySpec
from zerodown.spec.run_checks import run_problems
from zerodown.spec.types import (
    MAX_INSTANCES,
    CountOrPercent,
    Duration,
    Percent,
    Period,
    StrictModel,
    Timeout,
    shorten,
)

MAX_THRESHOLD = 1000
"""Consecutive probe results; 1000 x the shortest period is still under two minutes."""

Port = Annotated[int, Field(ge=1, le=65535)]


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or any(c.isspace() or c == ":" for c in host):
        raise ValueError(f"{shorten(value)} is not an address; write it like 127.0.0.1:8080")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise ValueError(f"the port of {shorten(value)} must be a number from 1 to 65535")
    return value


Address = Annotated[str, AfterValidator(_address), Field(examples=["127.0.0.1:8080"])]
"""host:port with a port from 1 to 65535."""
StopSignal = Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"]


class RunSpec(StrictModel):
    command: list[str] = Field(
        default_factory=list,
        description="argv; {port} and {version} substituted (a container: the image's if empty)",
    )
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = "."
    stop_signal: StopSignal = "SIGTERM"
    drain: Duration = Field(
        10.0, description="after leaving the route table, for in-flight requests"
    )
    drain_upgraded: Duration | None = Field(
        None,
        description="after leaving the route table, how long upgraded connections (WebSockets) "
        "stay open before the router closes them so they reconnect to the new release; default: "
        "drain. Also written drain: {requests: 10s, upgraded: 2m}",
    )
    stop_timeout: Duration = Field(30.0, description="after the stop signal, then SIGKILL")
    artifact: str | None = Field(
        None,
        description="hosts: the release as an archive (.tar.gz, .tgz, .tar, .zip) shipped instead"
        " of run.workdir; {version} substituted; relative to this file",
    )
    # platform kind container (spec/run_checks.py says which fields go with which platform)
    image: str | None = Field(None, description="container: the image; {version} substituted")
    port: Port | None = Field(None, description="container, network bridge: the app's port")
    volumes: list[str] = Field(default_factory=list, description="container: SRC:DEST[:ro]")
    network: Literal["host", "bridge"] = Field(
        "host", description="container: host (zerodown picks {port}) or bridge (run.port)"
    )

    @model_validator(mode="before")
    @classmethod
    def _drain_parts(cls, data: object) -> object:
        """`drain: {requests: 10s, upgraded: 2m}` is `drain: 10s` and `drain_upgraded: 2m`."""
        if not isinstance(data, dict) or not isinstance(data.get("drain"), dict):
            return data
        parts = data["drain"]
        unknown = sorted(set(parts) - {"requests", "upgraded"})
        if unknown:
            raise ValueError(
                f"drain has no key {unknown[0]!r}: write drain: 10s, or "
                "drain: {requests: 10s, upgraded: 2m}"
            )
        if "upgraded" in parts and "drain_upgraded" in data:
            raise ValueError("drain.upgraded and drain_upgraded say the same thing: keep one")
        rest = {k: v for k, v in data.items() if k != "drain"}
        if "requests" in parts:
            rest["drain"] = parts["requests"]
        if "upgraded" in parts:
            rest["drain_upgraded"] = parts["upgraded"]
        return rest

    @property
    def upgraded_drain(self) -> float:
        """How long a retiring instance's upgraded connections are kept."""
        return self.drain if self.drain_upgraded is None else self.drain_upgraded


class TcpCheck(StrictModel):
    port: Port | None = None


class ProbeSpec(StrictModel):
    http: str | None = Field(None, description="path, e.g. /healthz; 2xx and 3xx pass")
    tcp: TcpCheck | None = None
    exec: list[str] | None = Field(None, min_length=1, description="argv; exit code 0 passes")
    initial_delay: Duration = 0.0
    period: Period = 10.0
    timeout: Timeout = 1.0
    success_threshold: int = Field(1, ge=1, le=MAX_THRESHOLD)
    failure_threshold: int = Field(3, ge=1, le=MAX_THRESHOLD)

    @model_validator(mode="after")
    def _one_check(self) -> ProbeSpec:
        given = [k for k in ("http", "tcp", "exec") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a probe needs exactly one of http, tcp or exec")
        if self.http is not None and not self.http.startswith("/"):
            raise ValueError(f"http must be a path starting with '/', not {self.http!r}")
        return self


def _default_readiness() -> ProbeSpec:
    return ProbeSpec(tcp=TcpCheck(), period=1.0)


class ProbesSpec(StrictModel):
    startup: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    readiness: ProbeSpec = Field(default_factory=_default_readiness)

    @field_validator("startup", "liveness")
    @classmethod
    def _single_success(cls, probe: ProbeSpec | None) -> ProbeSpec | None:
        if probe is not None and probe.success_threshold != 1:
            raise ValueError(
                "success_threshold must be 1 for startup and liveness (as in Kubernetes)"
            )
        return probe


def _known(what: str) -> AfterValidator:
    """A driver kind the registry knows (`zerodown.drivers`: built-in or by entry point)."""

    def check(kind: str) -> str:
        from zerodown import drivers  # drivers name the spec's types: import it when used

        known = drivers.registry(what).kinds()
        if kind not in known:
            raise ValueError(
                f"no {what} of kind {shorten(kind)}; the kinds are: {', '.join(known)}"
            )
        return kind

    return AfterValidator(check)


def _store_url(url: str) -> str:
    from zerodown import drivers

    scheme = drivers.store_kind(url)
    known = drivers.stores.kinds()
    if scheme not in known:
        raise ValueError(
            f"{shorten(url)} names no state store; write it like sqlite:///.zerodown/state.db "
            f"(the stores are: {', '.join(f'{k}://' for k in known)})"
        )
    return url


class CertificateSpec(StrictModel):
    cert: str = Field(description="PEM certificate (chain) file, relative to this file's folder")
    key: str = Field(description="its PEM private key file")


class RouterTlsSpec(StrictModel):
    """TLS 1.2+ on the router's listeners (built-in router); SNI picks the certificate whose
    names match, the first one otherwise; files replaced on disk are picked up."""

    certificates: list[CertificateSpec] = Field(min_length=1, max_length=100)
    redirect_http: Address | None = Field(
        None, description="a plain-HTTP listener answering 308 to https, e.g. 127.0.0.1:80"
    )
    admin: bool = Field(False, description="router.admin_listen over TLS too")


class RouterAttach(StrictModel):
    """A router the team already runs, instead of one zerodown starts. Which fields a kind needs
    is its driver's to say (`drivers.routers.refusals`): haproxy `{admin_socket, backend}`,
    nginx `{config, reload}`."""

    admin_socket: str | None = Field(None, description="haproxy: its Runtime API unix socket")
    backend: str | None = Field(None, description="haproxy: the backend whose servers are ours")
    config: str | None = Field(None, description="nginx: the include file zerodown writes")
    reload: list[str] | None = Field(
        None, min_length=1, description="nginx: argv that reloads it, e.g. [nginx, -s, reload]"
    )


MAX_ROUTER_WORKERS = 64


class RouterSpec(StrictModel):
    kind: Annotated[str, _known("router")] = Field(
        "builtin", description="the router driver: builtin, haproxy, nginx, or a plug-in's"
    )
    listen: Address = "127.0.0.1:8080"
    admin_listen: Address | None = Field(None, description="TCP admin API, e.g. for Prometheus")
    header_timeout: Timeout = Field(
        10.0, description="a client still sending its request headers after this is cut off"
    )
    tls: RouterTlsSpec | None = None
    attach: RouterAttach | None = Field(
        None, description="drive a router the team runs (haproxy, nginx) instead of starting one"
    )
    workers: Annotated[int, Field(ge=1, le=MAX_ROUTER_WORKERS)] | Literal["auto"] = Field(
        1,
        description="builtin router: processes sharing the listening ports (SO_REUSEPORT, the"
        " kernel spreads connections); auto: one per core",
    )

    @model_validator(mode="after")
    def _workers_are_builtin(self) -> RouterSpec:
        if self.workers != 1 and self.kind != "builtin":
            raise ValueError(
                f"workers: the {self.kind} router runs its own processes; router.workers is"
                " for the builtin router (remove it, or set router.kind: builtin)"
            )
        return self

    @property
    def worker_count(self) -> int:
        """How many router processes `workers` asks for on this machine."""
        if self.workers == "auto":
            return max(1, min(os.cpu_count() or 1, MAX_ROUTER_WORKERS))
        return self.workers


class PlatformSpec(StrictModel):
    kind: Annotated[str, _known("platform")] = Field(
        "local", description="where instances run: local (processes), or a plug-in's"
    )


class StateSpec(StrictModel):
    url: Annotated[str, AfterValidator(_store_url)] = Field(
        "sqlite:///.zerodown/state.db",
        description="the state store, by URL; a relative path starts at the spec's directory",
    )


class ApiSpec(StrictModel):
    read_token: str | None = Field(
        None,
        description="when set, status, events, flag definitions and the dashboard need it too"
        " (Authorization: Bearer …); ${VAR} is read from the environment",
    )


class RollingSpec(StrictModel):
    max_surge: CountOrPercent = "25%"
    max_unavailable: CountOrPercent = 0
    min_ready: Duration = 0.0
    progress_deadline: Timeout = 600.0

    @model_validator(mode="after")
    def _can_progress(self) -> RollingSpec:
        """Kubernetes' rule: with no instance to add and none to take away, a rollout could
        never start. (A percentage that rounds to 0 is read as a surge of 1 by core.rolling.)"""
        if _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            raise ValueError(
                "max_surge and max_unavailable cannot both be 0: the rollout could neither add"
                " a new instance nor stop an old one; set max_surge: 1"
            )
        return self


def _is_zero(value: int | str) -> bool:
    return value == 0 or (isinstance(value, str) and int(value.rstrip("%")) == 0)


class BlueGreenSpec(StrictModel):
    preview_listen: Address | None = None
    auto_promote: bool = True
    auto_promote_after: Duration | None = None
    scale_down_delay: Duration = 30.0
    progress_deadline: Timeout = 600.0
    pre_promotion_analysis: AnalysisRef | None = None
    post_promotion_analysis: AnalysisRef | None = None


class Pause(StrictModel):
    duration: Duration | None = None


class HeaderRoute(StrictModel):
    header: str | None = None
    cookie: str | None = None
    value: str

    @model_validator(mode="after")
    def _one_key(self) -> HeaderRoute:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("set_header_route needs exactly one of header or cookie")
        return self


class CanaryStep(StrictModel):
    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    pause: Pause | None = None
    set_header_route: HeaderRoute | None = None
    analysis: AnalysisRef | None = None
    set_flag: SetFlagStep | None = None
    hold: Annotated[Duration, Field(gt=0, le=3600)] | None = Field(
        None, description="the router holds new requests this long, then sends them on in order"
    )

    @model_validator(mode="after")
    def _one_action(self) -> CanaryStep:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "each step has exactly one of set_weight, pause, set_header_route, analysis,"
                " set_flag, hold"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)


class StickySpec(StrictModel):
    cookie: str | None = None
    header: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> StickySpec:
        if (self.cookie is None) == (self.header is None):
            raise ValueError("sticky needs exactly one of cookie or header")
        return self


MAX_STEPS = 1000


class CanarySpec(StrictModel):
    steps: list[CanaryStep] = Field(min_length=1, max_length=MAX_STEPS)
    canary_scale: Literal["match_weight"] | Annotated[int, Field(ge=1, le=MAX_INSTANCES)] = (
        "match_weight"
    )
    sticky: StickySpec | None = None
    progress_deadline: Timeout = 600.0
    analysis: AnalysisRef | None = Field(None, description="background analysis across steps")


class StrategySpec(StrictModel):
    rolling: RollingSpec | None = None
    blue_green: BlueGreenSpec | None = None
    canary: CanarySpec | None = None

    @model_validator(mode="after")
    def _one_strategy(self) -> StrategySpec:
        given = [k for k in ("rolling", "blue_green", "canary") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"choose one strategy, not {' and '.join(given)}")
        return self

    @property
    def name(self) -> str:
        if self.blue_green is not None:
            return "blue_green"
        if self.canary is not None:
            return "canary"
        return "rolling"


SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class MigrationsSpec(StrictModel):
    database: str = Field(
        description="postgresql:// or mysql:// (MariaDB too) URL; ${VAR} is read from the environment"
    )
    dir: str = Field("migrations/", description="relative to zerodown.yaml")
    quiet_period: Duration | None = Field(
        None,
        description="contract once no old-version connection was seen this long after a rollout;"
        " unset: at the next deploy or `zerodown migrate complete`",
    )
    alembic: str | None = Field(
        None, description="alembic.ini (relative to zerodown.yaml): run its pending revisions"
    )
    allow: list[Literal["drop_column", "drop_table", "execute", "rename_column"]] = Field(
        default_factory=list,
        description="operations that break the old version or that zerodown cannot see (Alembic:"
        " drop_column, drop_table, execute; MySQL: rename_column)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> MigrationsSpec:
        # compared with the default, not fields_set: the controller re-validates dumped specs
        if self.alembic is not None and self.dir != "migrations/":
            raise ValueError("give either dir (zerodown migration files) or alembic, not both")
        return self

    @property
    def source(self) -> str:
        """The migrations directory, or the Alembic configuration file."""
        return self.alembic if self.alembic is not None else self.dir


class Spec(StrictModel):
    service: str = Field(pattern=SERVICE_NAME.pattern, description="lower-case name, e.g. shop")
    instances: int = Field(2, ge=1, le=MAX_INSTANCES)
    run: RunSpec
    probes: ProbesSpec = Field(default_factory=ProbesSpec)
    router: RouterSpec = Field(default_factory=RouterSpec)
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    state: StateSpec = Field(default_factory=StateSpec)
    api: ApiSpec = Field(default_factory=ApiSpec)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    gate: GateSpec | None = None
    smoke: SmokeSpec | None = None
    notify: list[NotifySpec] = Field(default_factory=list)
    migrations: MigrationsSpec | None = None
    compat: CompatSpec | None = None
    flag_guards: list[FlagGuardSpec] = Field(default_factory=list)
    caution: CautionSpec = Field(
        default_factory=CautionSpec, description="more care where a release's risk is higher"
    )
    # Several hosts over SSH (spec/hosts.py): with `hosts:` the platform is ssh unless named.
    hosts: list[HostSpec] = Field(default_factory=list, max_length=MAX_HOSTS)
    ssh: SshSpec = Field(default_factory=SshSpec)

    @model_validator(mode="before")
    @classmethod
    def _hosts_platform(cls, data: Any) -> Any:
        return default_platform(data)

    @field_validator("hosts")
    @classmethod
    def _hosts_distinct(cls, hosts: list[HostSpec]) -> list[HostSpec]:
        check_hosts(hosts)
        return hosts

    @model_validator(mode="after")
    def _hosts_need_ssh(self) -> Spec:
        check_platform(self.platform.kind, self.hosts)
        return self

    @property
    def rolling(self) -> RollingSpec:
        return self.strategy.rolling or RollingSpec()

    @model_validator(mode="after")
    def _run_fits_the_platform(self) -> Spec:
        """run.command for processes, run.image for containers (spec/run_checks.py)."""
        problems = run_problems(self.platform.kind, self.run, on_hosts=bool(self.hosts))
        if problems:
            raise ValidationError.from_exception_data(
                "Spec",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message),
                        loc=("run", *where),
                        input=None,
                    )
                    for where, message in problems
                ],
            )
        return self

    @model_validator(mode="after")
    def _templates_exist(self) -> Spec:
        """Every analysis a strategy names must resolve now, not when the rollout reaches it."""
        for ref in self.analysis_refs():
            resolve(self.analysis, ref)
        canary = self.strategy.canary
        for step in canary.steps if canary is not None else ():
            if step.analysis is not None and not all(
                is_bounded(m) for m in resolve(self.analysis, step.analysis).metrics
            ):
                raise ValueError(
                    "an analysis step must end by itself: give each of its metrics a count"
                )
        return self

    def analysis_refs(self) -> list[AnalysisRef]:
        refs: list[AnalysisRef] = []
        canary, bg = self.strategy.canary, self.strategy.blue_green
        if canary is not None:
            refs += [s.analysis for s in canary.steps if s.analysis is not None]
            refs += [canary.analysis] if canary.analysis is not None else []
        if bg is not None:
            refs += [r for r in (bg.pre_promotion_analysis, bg.post_promotion_analysis) if r]
        refs += [guard.analysis for guard in self.flag_guards]
        return refs


__all__ = ["Percent", "Spec"]
