"""What the driver contract suites share: a driver context on a fresh directory, what each
fixture hands a test, and `run` (each test is one coroutine on its own loop). A module, not the
conftest: conftest modules of different directories collide by name when imported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.services import free_port
from zerodown import drivers
from zerodown.core.ports import Platform, Router
from zerodown.paths import Paths
from zerodown.spec.model import RunSpec, Spec


def context(root: Path) -> drivers.DriverContext:
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"]},
            "router": {"listen": f"127.0.0.1:{free_port()}"},
        }
    )
    paths = Paths.for_spec(root / "zerodown.yaml")
    paths.ensure()
    return drivers.DriverContext(spec=spec, paths=paths)


@dataclass
class PlatformUnderTest:
    platform: Platform
    run: RunSpec  # an instance that runs until it is stopped
    stale: Callable[[str], str]  # a handle that names what `handle` named, no longer it
    cannot_start: Callable[[], RunSpec]  # makes the next launch fail for good


@dataclass
class RouterUnderTest:
    router: Router
    backend: Callable[[], str]  # an address a table may name


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
