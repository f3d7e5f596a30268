"""Window statistics over the router's per-request samples: rates and latency quantiles.

A sample is `(timestamp, latency_seconds, status)`; status 0 (or anything under 100) means the
client got no response from the release, which counts as an error, as does any 5xx.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Sample = tuple[float, float, int]

BUCKET_SECONDS = 1.0
"""Width of the intervals whose error rates the judge compares."""


def is_error(status: int) -> bool:
    return status >= 500 or status < 100


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (Hyndman-Fan type 7, numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True, slots=True)
class WindowStats:
    start: float
    end: float
    requests: int
    errors: int
    latencies: tuple[float, ...]  # sorted

    @property
    def error_rate(self) -> float:
        # no requests, no errors seen: min_samples keeps this from ever passing a metric
        return self.errors / self.requests if self.requests else 0.0

    @property
    def request_rate(self) -> float:
        span = self.end - self.start
        return self.requests / span if span > 0 else 0.0

    def value(self, query: str) -> float | None:
        """The value of a router query, or None when there is nothing to compute it from."""
        if query == "error_rate":
            return self.error_rate
        if query == "request_rate":
            return self.request_rate
        if query.startswith("latency_p"):
            if not self.latencies:
                return None
            return quantile(self.latencies, int(query.removeprefix("latency_p")) / 100)
        raise ValueError(f"unknown router query {query!r}")


def window_stats(samples: Iterable[Sample], start: float, end: float) -> WindowStats:
    inside = [s for s in samples if start <= s[0] <= end]
    return WindowStats(
        start=start,
        end=end,
        requests=len(inside),
        errors=sum(1 for s in inside if is_error(s[2])),
        latencies=tuple(sorted(s[1] for s in inside)),
    )


def bucket_error_rates(
    samples: Iterable[Sample], start: float, end: float, bucket: float = BUCKET_SECONDS
) -> list[float]:
    """Error rate of each bucket-wide interval of the window that saw at least one request."""
    totals: dict[int, list[int]] = {}
    for ts, _latency, status in samples:
        if start <= ts <= end:
            slot = totals.setdefault(int((ts - start) // bucket), [0, 0])
            slot[0] += 1
            slot[1] += is_error(status)
    return [errors / requests for requests, errors in (totals[k] for k in sorted(totals))]


def judge_samples(samples: Sequence[Sample], query: str, start: float, end: float) -> list[float]:
    """What the statistical judge compares: per-request latencies or per-interval error rates."""
    if query == "error_rate":
        return bucket_error_rates(samples, start, end)
    if query.startswith("latency_p"):
        return [s[1] for s in samples if start <= s[0] <= end]
    raise ValueError(f"the judge cannot compare {query!r}")


Reading = tuple[float, int]  # (wall-clock seconds, a release's cumulative request count)


def counted_rate(readings: Sequence[Reading], start: float, now: Reading) -> float | None:
    """Requests a second from `start` to `now`, from the cumulative counter: the newest earlier
    reading taken at or before `start`. The samples cannot give it where a window holds more
    requests than the sample ring keeps, or where a router logs a sample of its requests
    (routers/accesslog.py). None when no reading is that old (or it is older than a second
    window before `start`: it would stretch the window), or when the counter went back since
    (a restarted router starts from zero)."""
    before = [r for r in readings if r[0] <= start]
    if not before:
        return None
    at, count = before[-1]
    if start - at > max(now[0] - start, 0.0):
        return None
    if now[1] < count or any(later[1] < count for later in readings if later[0] > at):
        return None
    span = now[0] - at
    return (now[1] - count) / span if span > 0 else None
