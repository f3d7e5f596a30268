"""Drivers by kind: routers, platforms and state stores, found the way metric providers are.

The spec names each driver by kind: `router: {kind: builtin}`, `platform: {kind: local}`, and
`state: {url: sqlite:///…}` whose URL scheme is the store's kind. A built-in driver is registered
here by the path of its factory, so that only the chosen driver is ever imported; a third party
adds one through the entry-point groups `zerodown.routers`, `zerodown.platforms` and
`zerodown.stores` (name = kind, value = a factory taking a `DriverContext`). A driver is therefore
one new module plus one registry entry: the engine and the API import no driver.

A driver may also say what it cannot do with a spec: a validator (`Registry(validators=…)`, or
`register(kind, factory, validate=…)`) takes the loaded Spec and returns Refusals, each naming the
spec field at fault; the spec loader turns them into `file:line: field: why` before anything
starts (`refusals(spec)`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from zerodown.core.errors import SpecError
from zerodown.paths import Paths

if TYPE_CHECKING:  # the spec validates kinds against these registries: no import cycle
    from zerodown.core.ports import Platform, Router, StateStore
    from zerodown.spec.model import Spec

T = TypeVar("T")


@dataclass(frozen=True)
class DriverContext:
    """What a driver factory gets: the service's spec as it was at start and where state lives
    (`paths.state`, `.zerodown/` beside the spec file; `paths.logs` for the logs of the processes
    a driver starts; `paths.token_file` for drivers with an authenticated admin API)."""

    spec: Spec
    paths: Paths

    @property
    def spec_dir(self) -> Path:
        """Relative paths in the spec start here."""
        return self.paths.spec_dir


@dataclass(frozen=True)
class Refusal:
    """Something a driver cannot do with this spec: the field at fault (dotted, as the spec
    loader names fields: "router.attach.backend", "strategy.canary.steps.1") and why."""

    field: str
    message: str


Validator = Callable[["Spec"], Sequence[Refusal]]


class Registry(Generic[T]):
    """Factories of one kind of driver, by name."""

    def __init__(
        self,
        what: str,
        group: str,
        builtin: dict[str, str],
        validators: dict[str, str] | None = None,
    ) -> None:
        self.what = what  # "router", "platform", "state store": for messages
        self.group = group
        self._paths = dict(builtin)  # kind -> "module:factory"
        self._factories: dict[str, Callable[[DriverContext], T]] = {}
        self._entry_points_loaded = False
        self._validator_paths = dict(validators or {})  # kind -> "module:function" (light)
        self._validators: dict[str, Validator] = {}

    def register(
        self, kind: str, factory: Callable[[DriverContext], T], validate: Validator | None = None
    ) -> None:
        """A driver from code rather than an entry point (an application embedding zerodown)."""
        self._factories[kind] = factory
        if validate is not None:
            self._validators[kind] = validate

    def refusals(self, kind: str, spec: Spec) -> list[Refusal]:
        """What the driver of `kind` says it cannot do with `spec` (nothing if it has no
        validator)."""
        validate = self._validators.get(kind)
        if validate is None and kind in self._validator_paths:
            module, _, name = self._validator_paths[kind].partition(":")
            validate = self._validators[kind] = getattr(importlib.import_module(module), name)
        return list(validate(spec)) if validate is not None else []

    def kinds(self) -> list[str]:
        self._load_entry_points()
        return sorted({*self._paths, *self._factories})

    def create(self, kind: str, ctx: DriverContext) -> T:
        return self.factory(kind)(ctx)

    def factory(self, kind: str) -> Callable[[DriverContext], T]:
        if kind not in self._factories and kind not in self._paths:
            self._load_entry_points()
        if kind in self._factories:
            return self._factories[kind]
        if kind in self._paths:
            module, _, name = self._paths[kind].partition(":")
            factory: Callable[[DriverContext], T] = getattr(importlib.import_module(module), name)
            self._factories[kind] = factory
            return factory
        raise LookupError(f"no {self.what} of kind {kind!r}; known: {', '.join(self.kinds())}")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._paths:
                self._factories.setdefault(ep.name, _lazy(ep.load))


def _lazy(load: Callable[[], Any]) -> Callable[[DriverContext], Any]:
    """An entry point's factory, imported when it is first used, not when kinds are listed."""

    def factory(ctx: DriverContext) -> Any:
        return load()(ctx)

    return factory


routers: Registry[Router] = Registry(
    "router",
    "zerodown.routers",
    {
        "builtin": "zerodown.routers.proxy.driver:create",
        "haproxy": "zerodown.routers.haproxy.driver:create",
        "nginx": "zerodown.routers.nginx.driver:create",
    },
    validators={
        "builtin": "zerodown.routers.capabilities:builtin",
        "haproxy": "zerodown.routers.haproxy.validate:validate",
        "nginx": "zerodown.routers.nginx.validate:validate",
    },
)
platforms: Registry[Platform] = Registry(
    "platform",
    "zerodown.platforms",
    {
        "local": "zerodown.platforms.local:create",
        "container": "zerodown.platforms.container:create",
        "ssh": "zerodown.platforms.ssh:create",
    },
)
stores: Registry[StateStore] = Registry(
    "state store",
    "zerodown.stores",
    {
        "sqlite": "zerodown.store.sqlite:create",
        # libpq reads both schemes; two controllers can share this one (docs/controllers.md)
        "postgresql": "zerodown.store.postgres:create",
        "postgres": "zerodown.store.postgres:create",
    },
)


def registry(what: str) -> Registry[Any]:
    """The registry of "router", "platform" or "state store" drivers."""
    return {r.what: r for r in (routers, platforms, stores)}[what]


def store_kind(url: str) -> str:
    """A state store's kind is its URL's scheme: sqlite:///… is "sqlite"."""
    scheme, sep, _ = url.partition("://")
    return scheme if sep else ""


def refusals(spec: Spec) -> list[Refusal]:
    """What the drivers the spec names say they cannot do with it."""
    kinds = kinds_of(spec)
    return [
        *routers.refusals(kinds["router.kind"], spec),
        *platforms.refusals(kinds["platform.kind"], spec),
        *stores.refusals(kinds["state.url"], spec),
    ]


def kinds_of(spec: Spec) -> dict[str, str]:
    """The kind of each driver the spec names, by the field that names it."""
    return {
        "router.kind": spec.router.kind,
        "platform.kind": spec.platform.kind,
        "state.url": store_kind(spec.state.url),
    }


@dataclass(frozen=True)
class Drivers:
    """One service's drivers, made from its spec."""

    store: StateStore
    router: Router
    platform: Platform


def build(ctx: DriverContext) -> Drivers:
    """The drivers `ctx.spec` names (a kind no registry knows is a SpecError on its field)."""
    kinds = kinds_of(ctx.spec)
    return Drivers(
        store=_make(stores, kinds["state.url"], "state.url", ctx),
        router=_make(routers, kinds["router.kind"], "router.kind", ctx),
        platform=_make(platforms, kinds["platform.kind"], "platform.kind", ctx),
    )


def _make(registry: Registry[T], kind: str, field: str, ctx: DriverContext) -> T:
    try:
        factory = registry.factory(kind)
    except LookupError as exc:  # the spec loader checks kinds; a stored spec or a lost plug-in
        raise SpecError(str(exc), field=field) from None
    return factory(ctx)
