"""The `notify:` part of zerodown.yaml: webhooks that get one JSON event per rollout phase.

notify:
  - {webhook: "http://127.0.0.1:9999/hook", events: [started, promoted, aborted]}

zerodown.notify delivers them.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from zerodown.spec.types import StrictModel, Timeout

Event = Literal[
    "started",
    "step",
    "paused",
    "resumed",
    "analysis",
    "promoted",
    "aborted",
    "rolled_back",
    "completed",
    "failed",
]
"""Phases a rollout reports; a webhook lists the ones it wants."""

EVENTS: tuple[Event, ...] = get_args(Event)


def _all_events() -> list[Event]:
    return list(EVENTS)


class NotifySpec(StrictModel):
    webhook: str = Field(pattern=r"^https?://", description="POSTed one JSON event per phase")
    events: list[Event] = Field(default_factory=_all_events)
    format: Literal["json", "slack"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout = Field(5.0, description="per attempt")
    retries: int = Field(5, ge=0, le=20)
