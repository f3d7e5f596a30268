"""Cancelling a loop that runs until cancelled at the moment its wake-up comes in.

On Python 3.11, `await asyncio.wait_for(event.wait(), t)` returns when the event is set in the
same pass of the loop as its task is cancelled: the cancellation is lost, the loop goes on, and
whoever cancelled it and awaits it waits forever. `WakeEvent` stands in for the loop's event and
tells when the loop is parked on it; `cancel_as_it_wakes` sets it and cancels the task in one
synchronous block, then expects the task to end cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

PARK_PASSES = 1000  # passes of the event loop a task gets to reach its wait (no I/O before it)
END_WITHIN = 5.0  # seconds: a bound far above a cancelled task's end (a few passes)


class WakeEvent(asyncio.Event):
    """An asyncio.Event that knows whether a task is waiting on it now (not merely passing
    through a wait() of an event already set)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    async def wait(self) -> Literal[True]:
        self.waiting += 1
        try:
            return await super().wait()
        finally:
            self.waiting -= 1


async def parked(task: asyncio.Task[Any], event: WakeEvent) -> None:
    """Let `task` run until it waits on `event`."""
    for _ in range(PARK_PASSES):
        assert not task.done(), task
        if event.waiting:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not waiting on its wake-up event after {PARK_PASSES} passes")


async def cancel_as_it_wakes(task: asyncio.Task[Any], wake: Callable[[], None]) -> None:
    """Wake the task's loop and cancel the task in the same pass; it must end cancelled."""
    wake()
    task.cancel()
    try:
        async with asyncio.timeout(END_WITHIN):
            await asyncio.wait([task])
    except TimeoutError:
        task.cancel()  # (a failed test's loop: once more, at a moment it does not wake)
        raise AssertionError("the cancellation was lost: the task went on after it") from None
    assert task.cancelled(), "the task ended without its cancellation: " + repr(task)
