"""The hosts of a platform that has several (core.ports.HostWatch), as the engine sees them: each
pass asks which answer, remembers since when each has not (the grace period is counted from
there, core/hosts.py), and writes each change to the decision log."""

from __future__ import annotations

import logging
from collections.abc import Callable

from zerodown.core.hosts import HostView
from zerodown.core.model import Launch
from zerodown.core.ports import HostWatch, Platform
from zerodown.engine.clock import Clock

log = logging.getLogger("zerodown.engine")

HOST_ENV = "ZERODOWN_HOST"  # the host core placed an instance on, for the platform


def host_env(launch: Launch, index: int) -> dict[str, str]:
    """The environment that asks the platform for the host core chose for the index-th
    instance of `launch` (nothing without hosts)."""
    return {HOST_ENV: launch.hosts[index]} if index < len(launch.hosts) else {}


class HostViews:
    def __init__(self, platform: Platform, *, clock: Clock, post: Callable[[str, str], None]):
        self.watch = platform if isinstance(platform, HostWatch) else None
        self.clock = clock
        self.post = post
        self.views: tuple[HostView, ...] = ()

    async def refresh(self) -> tuple[HostView, ...]:
        if self.watch is None:
            return ()
        now = self.clock.now()
        before = {v.name: v for v in self.views}
        views = []
        for state in await self.watch.host_states():
            was = before.get(state.name)
            if state.up:
                views.append(HostView(state.name, state.address))
                if was is not None and not was.up:
                    self.post("host", f"host {state.name} answers again: back in use")
                continue
            since = was.down_since if was is not None and was.down_since is not None else now
            views.append(HostView(state.name, state.address, False, since, state.reason))
            if was is None or was.up:
                self.post("host", f"host {state.name} is not answering: {state.reason}")
        self.views = tuple(views)
        return self.views
