"""What the engine knows about its own health: when a pass last completed, the last error, and
how long to wait before the next try.

Guarantees (the engine never dies and never wedges silently):
- a failed pass is retried after a capped exponential backoff (BACKOFF_FIRST doubling up to
  BACKOFF_MAX), reset by the first pass that completes;
- an error is reported (logged with its traceback, written to the decision log) once, not once
  per pass: `failed` says to report the same message again only after REPEAT_AFTER seconds. The
  engine's outbox holds the entries until the store takes them, so an error of the store itself
  is written as soon as the store works again;
- `summary()` says, for `zerodown status`, when the last pass completed and whether the engine
  is stalled (no pass completed for STALL_AFTER seconds, failing or stuck).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zerodown.core.errors import ZerodownError

BACKOFF_FIRST = 0.25  # seconds before the retry of a failed pass, doubled per failure …
BACKOFF_MAX = 5.0  # … up to this
STALL_AFTER = 10.0  # seconds without a completed pass before `status` says "stalled"
REPEAT_AFTER = 600.0  # seconds before the same error is written to the decision log again
MESSAGE_MAX = 500  # characters of an error kept in the decision log


def describe(exc: BaseException) -> str:
    """An error in words: our own errors say what to do; anything else is named by its type."""
    text = str(exc) if isinstance(exc, ZerodownError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


@dataclass(frozen=True)
class PassError:
    at: float
    message: str


class PassHealth:
    def __init__(self, *, started_at: float) -> None:
        self.started_at = started_at
        self.last_pass: float | None = None
        self.last_error: PassError | None = None
        self.failures = 0  # consecutive failed passes
        self._reported: dict[str, float] = {}  # error message -> when it was last reported

    def passed(self, now: float) -> int:
        """Note a completed pass; returns how many failed passes it ends (0: none)."""
        ended, self.failures = self.failures, 0
        self.last_pass = now
        return ended

    def failed(self, exc: BaseException, now: float) -> str | None:
        """Note a failed pass; its error in words when it should be reported (not a repeat)."""
        self.failures += 1
        message = f"reconcile pass failed: {describe(exc)}"
        self.last_error = PassError(at=now, message=message)
        for old, at in list(self._reported.items()):
            if now - at >= REPEAT_AFTER:
                del self._reported[old]
        if message in self._reported:
            return None
        self._reported[message] = now
        return message

    def backoff(self) -> float:
        if self.failures == 0:
            return 0.0
        return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.failures - 1, 16)))

    def stalled_since(self, now: float) -> float | None:
        since = self.last_pass if self.last_pass is not None else self.started_at
        return since if now - since > STALL_AFTER else None

    def summary(self, now: float) -> dict[str, Any]:
        """The `controller` part of the status JSON (the CLI and the dashboard render it)."""
        error = self.last_error
        return {
            "last_pass": self.last_pass,
            "stalled_since": self.stalled_since(now),
            "last_error": None if error is None else {"at": error.at, "message": error.message},
        }
