"""`@on_fake_world(spec)`: a test that is a coroutine taking a FakeService, run on its own event
loop with the service closed afterwards (whatever the outcome)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from support.fake_service import FakeService

Scenario = Callable[[FakeService], Awaitable[None]]


def on_fake_world(spec: dict[str, Any] | None = None) -> Callable[[Scenario], Callable[..., None]]:
    def wrap(scenario: Scenario) -> Callable[..., None]:
        async def run(root: Path) -> None:
            service = FakeService(root, spec)
            try:
                await scenario(service)
            finally:
                await service.close()

        def test(tmp_path: Path) -> None:
            asyncio.run(run(tmp_path))

        test.__name__, test.__doc__ = scenario.__name__, scenario.__doc__
        return test

    return wrap
