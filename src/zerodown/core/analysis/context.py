"""What a metric provider gets to measure with: names, the window, and where router stats live.

The built-in router provider must not import the router driver (drivers do not import each
other), so the engine hands it any object with the two methods of `StatsSource`: a router driver
that has them. `StatsSource` is also the RouterStats port (core/ports.py names it so): defined
here, because the ports import this package and this package never imports the ports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from zerodown.core.analysis.stats import Sample
from zerodown.core.routes import ReleaseStats


@runtime_checkable
class StatsSource(Protocol):
    """The router's traffic figures: what `AnalysisContext.stats_source` reads."""

    async def stats(self) -> Mapping[str, ReleaseStats]:
        """Cumulative counters per release."""
        ...

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        """Per-request (timestamp, latency seconds, status) of `release` since `since`."""
        ...


@dataclass(frozen=True, slots=True)
class AnalysisContext:
    service: str
    canary: str  # the release under analysis
    stable: str | None = None  # the baseline release, for compare: baseline
    stats_source: StatsSource | None = None
    window_start: float = 0.0  # wall-clock seconds; the runner sets it per measurement
    now: float = 0.0
    placeholders: Mapping[str, str] = field(default_factory=dict)  # more {name} substitutions
    judge_state: Mapping[str, Any] | None = None  # a sequential judge's state from its last look

    def substitute(self, text: str) -> str:
        """Replace {canary}, {stable}, {service} (and extra placeholders) in a query or URL."""
        values = {"canary": self.canary, "stable": self.stable or "", "service": self.service}
        values.update(self.placeholders)
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def as_baseline(self) -> AnalysisContext:
        """The same context with the stable release in the canary's place (to measure it)."""
        return AnalysisContext(
            service=self.service,
            canary=self.stable or "",
            stable=self.stable,
            stats_source=self.stats_source,
            window_start=self.window_start,
            now=self.now,
            placeholders=self.placeholders,
        )
