"""Measurements and analysis-run state as plain data, JSON round-trippable for the store.

Phases and their meaning follow Argo Rollouts' AnalysisRun: a measurement is successful, failed,
inconclusive, or an error (the provider could not measure). Only completed measurements are
stored; one that was in flight when the controller died is simply taken again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    FAILED = "failed"

    @property
    def completed(self) -> bool:
        return self not in (Phase.PENDING, Phase.RUNNING)


# Worse comes later: the run takes the worst phase among its decisive metrics (as Argo does).
SEVERITY: dict[Phase, int] = {
    Phase.PENDING: 0,
    Phase.RUNNING: 1,
    Phase.SUCCESSFUL: 2,
    Phase.INCONCLUSIVE: 3,
    Phase.ERROR: 4,
    Phase.FAILED: 5,
}


class Verdict(StrEnum):
    """The statistical judge's score of one metric, or of all of them."""

    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Measurement:
    phase: Phase
    started_at: float
    finished_at: float
    value: float | None = None
    baseline: float | None = None  # the stable release's value, with compare: baseline
    samples: int | None = None  # requests the measurement saw (router provider)
    insufficient: bool = False  # fewer than min_samples: may fail, can never pass
    verdict: Verdict | None = None  # the judge's score, when the metric has a judge
    message: str = ""
    state: Mapping[str, Any] | None = None  # a sequential judge's state after this look

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "phase": self.phase.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        for key in ("value", "baseline", "samples", "message"):
            if getattr(self, key) not in (None, ""):
                data[key] = getattr(self, key)
        if self.insufficient:
            data["insufficient"] = True
        if self.verdict is not None:
            data["verdict"] = self.verdict.value
        if self.state is not None:
            data["state"] = dict(self.state)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Measurement:
        verdict = data.get("verdict")
        samples = data.get("samples")
        return cls(
            phase=Phase(data["phase"]),
            started_at=float(data["started_at"]),
            finished_at=float(data["finished_at"]),
            value=_float_or_none(data.get("value")),
            baseline=_float_or_none(data.get("baseline")),
            samples=None if samples is None else int(samples),
            insufficient=bool(data.get("insufficient", False)),
            verdict=None if verdict is None else Verdict(verdict),
            message=str(data.get("message", "")),
            state=data.get("state"),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def error(started_at: float, finished_at: float, message: str) -> Measurement:
    """What a provider returns when it could not measure: never an exception upward."""
    return Measurement(Phase.ERROR, started_at, finished_at, message=message)


@dataclass(frozen=True, slots=True)
class RunState:
    """Everything an analysis run needs to resume after a restart: persist `to_json()`."""

    started_at: float
    measurements: Mapping[str, tuple[Measurement, ...]] = field(default_factory=dict)
    terminated: bool = False  # asked to stop: running metrics end as they stand

    def of(self, metric: str) -> tuple[Measurement, ...]:
        return tuple(self.measurements.get(metric, ()))

    def adding(self, metric: str, measurement: Measurement) -> RunState:
        updated = dict(self.measurements)
        earlier = self.of(metric)
        if measurement.state is not None:
            # a sequential judge's state is cumulative: only the latest one is ever needed
            earlier = tuple(replace(m, state=None) for m in earlier)
        updated[metric] = (*earlier, measurement)
        return replace(self, measurements=updated)

    def terminating(self) -> RunState:
        return replace(self, terminated=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "terminated": self.terminated,
            "measurements": {
                name: [m.to_json() for m in items] for name, items in self.measurements.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        return cls(
            started_at=float(data["started_at"]),
            terminated=bool(data.get("terminated", False)),
            measurements={
                str(name): tuple(Measurement.from_json(m) for m in items)
                for name, items in dict(data.get("measurements", {})).items()
            },
        )
