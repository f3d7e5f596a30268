"""Webhook notifications: one JSON event per rollout phase, delivered in the background.

`Notifier.notify()` returns at once; each webhook has its own queue and worker, so events reach
one receiver in the order they happened, and a slow or dead receiver delays nobody else. A
failed delivery (no connection, timeout, 429 or 5xx) is retried with exponential backoff
(0.5 s, 1 s, 2 s, ... capped at 30 s) up to the webhook's `retries`; other 4xx are not retried.

format: json  -> {"event", "service", "release", "time", "message", ...fields}
format: slack -> {"text": "..."}, which Slack incoming webhooks (and Mattermost, Rocket.Chat)
                 accept as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from zerodown.spec.notify import NotifySpec

log = logging.getLogger("zerodown.notify")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

_ICONS = {
    "started": ":rocket:",
    "step": ":arrow_forward:",
    "paused": ":double_vertical_bar:",
    "resumed": ":arrow_forward:",
    "analysis": ":bar_chart:",
    "promoted": ":white_check_mark:",
    "aborted": ":rotating_light:",
    "rolled_back": ":leftwards_arrow_with_hook:",
    "completed": ":tada:",
    "failed": ":x:",
}


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook: str
    event: str
    delivered: bool
    attempts: int
    detail: str  # "HTTP 200", or the last error


def payload(spec: NotifySpec, event: dict[str, Any]) -> dict[str, Any]:
    if spec.format == "json":
        return event
    icon = _ICONS.get(str(event.get("event")), "")
    who = event.get("service", "")
    release = event.get("release")
    head = f"{icon} zerodown: {who}" + (f" {release}" if release else "")
    text = f"{head} {event.get('event')}"
    if event.get("message"):
        text += f": {event['message']}"
    return {"text": text.strip()}


@dataclass
class _Webhook:
    spec: NotifySpec
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None


class Notifier:
    def __init__(
        self,
        specs: Sequence[NotifySpec],
        *,
        service: str,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.service = service
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self._hooks = [_Webhook(spec) for spec in specs]
        self._client: httpx.AsyncClient | None = None
        self.deliveries: list[Delivery] = []  # most recent last, for status and tests

    def notify(
        self, event: str, *, release: str | None = None, message: str = "", **fields: Any
    ) -> None:
        """Queue `event` for every webhook that wants it; never blocks, never raises."""
        body: dict[str, Any] = {
            "event": event,
            "service": self.service,
            "release": release,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "message": message,
            **fields,
        }
        for hook in self._hooks:
            if event not in hook.spec.events:
                continue
            hook.queue.put_nowait(body)
            if hook.worker is None or hook.worker.done():
                hook.worker = asyncio.get_running_loop().create_task(self._work(hook))

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued event was delivered or given up on (at shutdown, in tests)."""
        async with asyncio.timeout(timeout):
            for hook in self._hooks:
                await hook.queue.join()

    async def aclose(self) -> None:
        for hook in self._hooks:
            if hook.worker is not None:
                hook.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hook.worker
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _work(self, hook: _Webhook) -> None:
        while True:
            event = await hook.queue.get()
            try:
                self._record(await self._deliver(hook.spec, event))
            finally:
                hook.queue.task_done()

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        del self.deliveries[:-200]
        if not delivery.delivered:
            log.warning(
                "webhook %s: event %s not delivered after %d attempt(s): %s",
                delivery.webhook,
                delivery.event,
                delivery.attempts,
                delivery.detail,
            )

    async def _deliver(self, spec: NotifySpec, event: dict[str, Any]) -> Delivery:
        if self._client is None:
            self._client = httpx.AsyncClient()
        body = payload(spec, event)
        delay = self.backoff_first
        detail = ""
        attempts = 0
        for attempt in range(spec.retries + 1):
            attempts = attempt + 1
            try:
                response = await self._client.post(
                    spec.webhook, json=body, headers=spec.headers, timeout=spec.timeout
                )
                detail = f"HTTP {response.status_code}"
                if response.is_success:
                    return Delivery(spec.webhook, event["event"], True, attempts, detail)
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses this payload: retrying will not help
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            if attempt < spec.retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        return Delivery(spec.webhook, event["event"], False, attempts, detail)
