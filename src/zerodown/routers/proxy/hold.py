"""Holding traffic (`zerodown hold` / `release`): new requests wait in the router, in order,
while every instance is stopped for a moment (a blocking migration, a host move).

While a hold is on, the router keeps accepting and reading requests, and queues each one when
it would be routed. The queue is bounded in requests and in bytes (head plus announced body);
past either bound a request is answered 503 with Retry-After at once. When the hold ends
(`release`), the queue is routed in arrival order, at most RELEASE_CONCURRENCY at a time so the
backends see a steady stream rather than every queued connection at once. When the hold's
maximum time runs out instead, the requests still queued are answered 503 with Retry-After (they
waited as long as they were promised) and traffic flows again.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

MAX_REQUESTS = 10_000
MAX_BYTES = 64 * 1024 * 1024
BODY_COUNTED = 256 * 1024  # a body counts up to what the router buffers before pausing its client
RELEASE_CONCURRENCY = 128  # released requests in flight at once
RETRY_AFTER = 1  # seconds, in the 503 of a request the hold could not keep


class Held(Protocol):
    """A request waiting in the hold (dataplane.Exchange)."""

    done: bool
    head_size: int
    content_length: int

    def route(self) -> None:
        """Route it now (the hold ended)."""
        ...

    def refuse_held(self, why: bytes) -> None:
        """Answer 503 with Retry-After."""
        ...


class Hold:
    __slots__ = (
        "bytes",
        "max_bytes",
        "max_requests",
        "queue",
        "refused",
        "releasing",
        "total",
        "until",
    )

    def __init__(self, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> None:
        self.until = 0.0  # monotonic time the hold lapses; 0: not holding
        self.queue: deque[Held] = deque()
        self.releasing: deque[Held] = deque()  # released, waiting for a slot to be routed
        self.bytes = 0
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.total = 0  # requests held since the router started
        self.refused = 0  # answered 503 because the hold was full or ran out of time

    def admit(self, ex: Held) -> bool:
        size = ex.head_size + min(max(ex.content_length, 0), BODY_COUNTED)
        if len(self.queue) >= self.max_requests or self.bytes + size > self.max_bytes:
            self.refused += 1
            return False
        self.queue.append(ex)
        self.bytes += size
        self.total += 1
        return True

    def end(self, *, refuse: bool) -> int:
        """Stop holding; the queued requests are refused, or moved to `releasing` (routed by
        `pump`). How many there were."""
        self.until = 0.0
        queue, self.queue, self.bytes = self.queue, deque(), 0
        waiting = [ex for ex in queue if not ex.done]
        if refuse:
            self.refused += len(waiting)
            for ex in waiting:
                ex.refuse_held(b"the router held this request as long as it could")
        else:
            self.releasing.extend(waiting)
        return len(waiting)

    def pump(self, in_flight: int) -> None:
        """Route released requests while fewer than RELEASE_CONCURRENCY are in flight."""
        releasing = self.releasing
        while releasing and in_flight < RELEASE_CONCURRENCY:
            ex = releasing.popleft()
            if not ex.done:
                ex.route()
                in_flight += 1

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "holding": bool(self.until),
            "seconds_left": round(max(0.0, self.until - now), 3) if self.until else 0.0,
            "held": len(self.queue),
            "bytes": self.bytes,
            "releasing": len(self.releasing),
            "held_total": self.total,
            "refused_total": self.refused,
        }
