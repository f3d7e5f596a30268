"""The MetricProvider interface, the registry keyed by provider kind, and the safe `measure`.

A provider failure is a Measurement with phase ERROR, never an exception upward: `measure`
applies the metric's timeout and turns whatever goes wrong into such a measurement, so the
analysis runner only ever sees measurements. Third parties add a provider kind through the
`zerodown.metrics` entry-point group (name = kind, value = an object with `measure`).
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import entry_points
from typing import Protocol

from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Measurement, error
from zerodown.spec.analysis import MetricSpec

ENTRY_POINT_GROUP = "zerodown.metrics"


class MetricProvider(Protocol):
    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement: ...


class Registry:
    def __init__(self) -> None:
        self._providers: dict[str, MetricProvider] = {}
        self._loaded_entry_points = False

    def register(self, kind: str, provider: MetricProvider) -> None:
        self._providers[kind] = provider

    def get(self, kind: str) -> MetricProvider:
        if kind not in self._providers and not self._loaded_entry_points:
            self._loaded_entry_points = True
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._providers.setdefault(ep.name, ep.load())
        try:
            return self._providers[kind]
        except KeyError:
            known = ", ".join(sorted(self._providers))
            raise LookupError(f"no metric provider {kind!r} (known: {known})") from None

    def kinds(self) -> list[str]:
        return sorted(self._providers)


def default_registry() -> Registry:
    from zerodown.metrics.command import CommandProvider
    from zerodown.metrics.prometheus import PrometheusProvider
    from zerodown.metrics.router import RouterProvider
    from zerodown.metrics.web import WebProvider

    registry = Registry()
    registry.register("router", RouterProvider())
    registry.register("prometheus", PrometheusProvider())
    registry.register("web", WebProvider())
    registry.register("command", CommandProvider())
    return registry


async def measure(
    metric: MetricSpec, ctx: AnalysisContext, *, registry: Registry | None = None
) -> Measurement:
    """Take one measurement; never raises except for cancellation."""
    started = time.time()
    try:
        provider = (registry or default_registry()).get(metric.provider_kind)
        async with asyncio.timeout(metric.timeout):
            return await provider.measure(metric, ctx)
    except TimeoutError:
        return error(started, time.time(), f"no answer within {metric.timeout:g}s (timeout)")
    except Exception as exc:  # a provider bug or an outage is an ERROR measurement, by contract
        return error(started, time.time(), f"{type(exc).__name__}: {exc}")


def tail(text: str, limit: int = 400) -> str:
    """The end of an output or body, on one line, for a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]
