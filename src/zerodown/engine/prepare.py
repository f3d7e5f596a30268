"""Getting a rollout's release ready on the platform before the rollout does anything.

The engine asks the platform to `prepare` the release of an active rollout (pull its image, ship
its files) before the first decision of that rollout, so that a release that cannot be had (an
image the registry does not know) fails the rollout while every old instance still serves and no
route has changed. Preparation runs as a task of its own: a pass waits for it a few seconds (a
platform with nothing to do costs no pass), and passes that find it still running decide nothing
until it ends (a long pull holds the rollout, not the loop). It is done once per revision by each
controller: a restarted controller prepares again, which a platform makes cheap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from zerodown.core.ports import Platform
from zerodown.spec.model import RunSpec

PREPARE_WAIT = 5.0  # seconds a pass waits for a preparation before it lets the loop go on


class Preparations:
    def __init__(self, platform: Platform, *, poke: Callable[[], None]) -> None:
        self.platform = platform
        self.poke = poke
        self.done: set[int] = set()  # revisions prepared by this controller
        self.wait = PREPARE_WAIT
        self.tasks: dict[int, asyncio.Task[None]] = {}

    async def ready(self, revision: int, release: str, run: RunSpec) -> bool:
        """True once `release` is ready; False while it is being prepared. Raises what the
        platform raised (the task is forgotten, so a later call starts it again)."""
        if revision in self.done:
            return True
        for other in [r for r in self.tasks if r != revision]:  # superseded: moot
            self.tasks.pop(other).cancel()
        task = self.tasks.get(revision)
        if task is None:
            task = asyncio.create_task(
                self.platform.prepare(release=release, run=run), name=f"prepare {release}"
            )
            task.add_done_callback(lambda _t: self.poke())
            self.tasks[revision] = task
        await asyncio.wait({task}, timeout=self.wait)
        if not task.done():
            return False
        del self.tasks[revision]
        task.result()
        self.done.add(revision)
        return True

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
