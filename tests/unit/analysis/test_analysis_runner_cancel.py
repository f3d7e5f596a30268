"""An analysis run (`AnalysisRunner.run`, a task of `Analyses`) ends when its task is cancelled,
also when the cancellation comes in the same pass of the event loop as the run's wake-up
(`terminate`): `Analyses.cancel` cancels the task on an abort or a newer rollout and then waits
for it (support/wakeups.py says how a cancellation was lost there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from support.wakeups import WakeEvent, cancel_as_it_wakes, parked
from zerodown.checkers.analysis import AnalysisRunner
from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.model import Measurement, Phase
from zerodown.metrics.base import Registry
from zerodown.spec.analysis import MetricSpec

pytestmark = pytest.mark.anyio

NOW = 1_000_000.0  # the runner's clock stands still: its next measurement is an hour away
CTX = AnalysisContext(service="shop", canary="v2", stable="v1", now=NOW)


class Answers:
    """A provider that measures at once, without the network."""

    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        return Measurement(Phase.SUCCESSFUL, ctx.now, ctx.now, value=0.01)


def hourly_runner() -> tuple[AnalysisRunner, WakeEvent]:
    metric = MetricSpec.model_validate(
        {
            "name": "w",
            "provider": {"web": {"url": "http://192.0.2.1/v"}},
            "interval": "1h",
            "initial_delay": 0,
            "count": 3,
        }
    )
    registry = Registry()
    registry.register("web", Answers())
    runner = AnalysisRunner([metric], CTX, registry=registry, clock=lambda: NOW)
    runner._wake = wake = WakeEvent()  # the runner's own event, told apart when waited on
    return runner, wake


@pytest.mark.parametrize(
    "wake_up",
    [
        pytest.param(lambda runner, wake: runner.terminate, id="terminate"),
        pytest.param(lambda runner, wake: wake.set, id="wake-up"),
        pytest.param(lambda runner, wake: lambda: None, id="no-wake-up"),
    ],
)
async def test_the_run_ends_when_cancelled_as_it_wakes(
    wake_up: Callable[[AnalysisRunner, WakeEvent], Callable[[], None]],
) -> None:
    runner, wake = hourly_runner()
    task = asyncio.create_task(runner.run())
    await parked(task, wake)
    assert len(runner.state.of("w")) == 1  # the first measurement is in; the next is an hour on
    await cancel_as_it_wakes(task, wake_up(runner, wake))
