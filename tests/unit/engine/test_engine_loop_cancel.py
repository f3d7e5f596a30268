"""The engine's loop (`Engine.run`) ends when its task is cancelled, also when the cancellation
comes in the same pass of the event loop as a poke: the controller cancels the loop when it
stops or steps down to standby and then waits for it (support/wakeups.py says how a
cancellation was lost there)."""

from __future__ import annotations

import asyncio

from fake_world_kit import on_fake_world

from support.fake_service import FakeService
from support.wakeups import WakeEvent, cancel_as_it_wakes, parked


async def cancel_the_loop(service: FakeService, *, poke: bool) -> None:
    """Run the engine's loop until it waits for a poke, then cancel it, poked in the same pass
    or not; the loop must end cancelled."""
    await service.up("v1")
    engine = service.engine
    engine.wake = wake = WakeEvent()
    task = asyncio.create_task(engine.run())
    await parked(task, wake)
    await cancel_as_it_wakes(task, engine.poke if poke else lambda: None)


@on_fake_world()
async def test_the_loop_ends_when_cancelled_as_a_poke_wakes_it(service: FakeService) -> None:
    await cancel_the_loop(service, poke=True)


@on_fake_world()
async def test_the_loop_ends_when_cancelled_while_it_waits(service: FakeService) -> None:
    await cancel_the_loop(service, poke=False)
