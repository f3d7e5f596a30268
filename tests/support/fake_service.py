"""A service on the fake world (fake_drivers/), run by the real controller and engine, pass by
pass, on a fake clock: a rollout that takes minutes of its own time takes milliseconds.

`tick()` moves the clock, makes one engine pass exactly as the controller's loop would
(`Engine.step`), checks what must hold after every pass, then lets the probe monitors and
retirements the pass started run until they wait on the clock again. After every pass:

- the router sends traffic only to instances the store holds as serving (rule 1);
- the fake platform saw no instance stopped while the router's table still held it (rule 2);
- nothing waits on real time or real I/O (the fake clock's `settle`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zerodown_fake_drivers import FakeProber, FakeWorld

from support.fake_clock import FakeClock
from zerodown.api.controller import Controller
from zerodown.core.model import Instance, ServiceStatus
from zerodown.paths import Paths
from zerodown.spec.model import Spec

SERVICE = "shop"


def fake_spec(**overrides: Any) -> dict[str, Any]:
    """A spec for the fake world: two instances, probes every second, rolling one at a time."""
    spec: dict[str, Any] = {
        "service": SERVICE,
        "router": {"kind": "fake"},
        "platform": {"kind": "fake"},
        "state": {"url": "fake://"},
        "instances": 2,
        "run": {"command": ["app", "{port}"], "drain": "2s", "stop_timeout": "5s"},
        "probes": {
            "startup": {"http": "/healthz", "period": "1s", "failure_threshold": 3},
            "readiness": {"http": "/ready", "period": "1s", "failure_threshold": 2},
            "liveness": {"http": "/healthz", "period": "1s", "failure_threshold": 3},
        },
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
    }
    spec.update(overrides)
    return spec


class FakeService:
    def __init__(self, root: Path, spec: dict[str, Any] | None = None) -> None:
        self.doc = copy.deepcopy(spec or fake_spec())
        self.paths = Paths.for_spec(root / "zerodown.yaml")
        self.clock = FakeClock()
        self.controller = self._controller()
        self.world = FakeWorld.at(self.paths.state)

    def _controller(self) -> Controller:
        spec = Spec.model_validate(self.doc)
        world = FakeWorld.at(self.paths.state)
        return Controller(self.paths, spec, clock=self.clock, prober=FakeProber(world))

    @property
    def engine(self) -> Any:
        return self.controller.engine

    # --- reading -----------------------------------------------------------------------------

    def status(self) -> ServiceStatus:
        return self.controller.status()

    def instances(self, release: str | None = None) -> list[Instance]:
        every = self.controller.store.instances(SERVICE)
        return [i for i in every if release is None or i.release == release]

    def events(self, kind: str | None = None) -> list[str]:
        every = self.controller.store.events(SERVICE, limit=10_000)
        return [e.message for e in every if kind is None or e.kind == kind]

    # --- commands ----------------------------------------------------------------------------

    def deploy(self, version: str, *, strategy: str | None = None) -> dict[str, Any]:
        return self.controller.deploy(version=version, spec=self.doc, strategy=strategy, who="test")

    # --- time --------------------------------------------------------------------------------

    async def tick(self, seconds: float = 0.25) -> None:
        await self.clock.advance(seconds)
        await self.engine.step()
        if not self.world.store_locked:
            self.check_rules()
        await self.clock.settle()

    async def run_until(
        self, done: Callable[[], object], *, what: str, passes: int = 400, seconds: float = 0.25
    ) -> None:
        for _ in range(passes):
            if done():
                return
            await self.tick(seconds)
        raise AssertionError(f"{what}: not after {passes} passes of {seconds:g}s")

    async def up(self, version: str = "v1") -> None:
        self.deploy(version)
        await self.run_until(lambda: self.status().stable == version, what=f"{version} serving")

    async def restart(self) -> None:
        """The controller dies and a new one starts on the same world (its store included)."""
        await self.engine.shutdown()
        await self.controller.aclose()
        self.controller = self._controller()

    async def close(self) -> None:
        await self.engine.shutdown()
        await self.controller.aclose()
        self.world.close()

    def check_rules(self) -> None:
        assert self.world.violations == [], self.world.violations
        table = self.world.table
        if table is None or not self.world.router_reachable:
            return
        serving = {i.address for i in self.instances() if i.serving}
        assert table.addresses() <= serving, (table, serving)
