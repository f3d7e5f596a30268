"""Per-release counters, latency histogram, recent samples and their Prometheus text form.

Recording a request is a handful of integer additions and one deque append: the hot path never
logs or allocates much.

Flag variants are counted like releases: a response carrying `X-Zerodown-Flags: key=variant,...`
(added by the flag middleware) is recorded once more per listed flag under the pseudo-release
`flag:<key>=<variant>`, so `/stats`, `/samples`, `/metrics` and the analysis `router` provider
see per-variant requests, errors and latencies without anything new.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from zerodown.core.model import flag_release
from zerodown.core.routes import LATENCY_BUCKETS, ReleaseStats

DEFAULT_SAMPLES = 20_000

FLAGS_HEADER = b"x-zerodown-flags"  # lower case; compared after a length check
MAX_FLAGS_PER_RESPONSE = 32  # more names in one header are ignored
MAX_NAME = 200  # a longer key or variant is ignored
MAX_RELEASES = 128
"""No new flag pseudo-release once the router counts this many releases in all: each keeps up
to `--samples` samples (about 2.5 MB at the default), and the header comes from the backend."""

_FLAG_NAMES: dict[bytes, tuple[str, ...]] = {}  # header value -> pseudo-release names


def parse_flags_header(value: bytes) -> tuple[str, ...]:
    """`key=variant,key=variant` (percent-encoded, as the middleware writes it) → the
    pseudo-release names `flag:key=variant`, in order, one per key; malformed items are
    skipped. Cached: a service sends few distinct combinations."""
    cached = _FLAG_NAMES.get(value)
    if cached is not None:
        return cached
    names: list[str] = []
    seen: set[str] = set()
    for item in value.decode("latin-1").split(","):
        key, eq, variant = item.strip().partition("=")
        key, variant = unquote(key.strip()), unquote(variant.strip())
        if not eq or not key or not variant or key in seen:
            continue
        if len(key) > MAX_NAME or len(variant) > MAX_NAME:
            continue
        seen.add(key)
        names.append(flag_release(key, variant))
        if len(names) >= MAX_FLAGS_PER_RESPONSE:
            break
    result = tuple(names)
    if len(_FLAG_NAMES) < 4096:  # bounded: a backend cannot grow it without limit
        _FLAG_NAMES[value] = result
    return result


class ReleaseCounters:
    __slots__ = (
        "codes",
        "counts",
        "latency_sum",
        "requests",
        "responses_4xx",
        "responses_5xx",
        "samples",
        "transport_errors",
    )

    def __init__(self, samples: int = DEFAULT_SAMPLES) -> None:
        self.requests = 0
        self.responses_4xx = 0
        self.responses_5xx = 0
        self.transport_errors = 0
        self.latency_sum = 0.0
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.codes: dict[int, int] = {}
        self.samples: deque[tuple[float, float, int]] = deque(maxlen=samples)

    def record(self, status: int, latency: float, wall: float, transport_error: bool) -> None:
        # transport_error is positional too: the hot path saves a keyword call per request.
        self.requests += 1
        if transport_error:
            # The router answered itself (502/503): counted once, as a transport error.
            self.transport_errors += 1
        elif status >= 500:
            self.responses_5xx += 1
        elif status >= 400:
            self.responses_4xx += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.latency_sum += latency
        self.counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.samples.append((wall, latency, status))

    def record_many(
        self,
        status: int,
        latencies: list[float],
        wall: float,
        transport_error: bool,
        weight: int = 1,
    ) -> None:
        """`record` for requests of the same status, at once (the access-log collector's batches:
        tens of thousands of lines a second must cost little CPU beside the router).

        `weight`: the requests each latency stands for (a sampled access log keeps one request
        in `weight`): the counters and the histogram grow by that many, the samples by one per
        latency, since the samples are what the judges compare (routers/accesslog.py)."""
        n = len(latencies) * weight
        self.requests += n
        if transport_error:
            self.transport_errors += n
        elif status >= 500:
            self.responses_5xx += n
        elif status >= 400:
            self.responses_4xx += n
        codes = self.codes
        codes[status] = codes.get(status, 0) + n
        self.latency_sum += sum(latencies) * weight
        counts = self.counts
        for latency in latencies:
            counts[bisect_left(LATENCY_BUCKETS, latency)] += weight
        keep = self.samples.maxlen or len(latencies)
        self.samples.extend([(wall, latency, status) for latency in latencies[-keep:]])

    def snapshot(self) -> ReleaseStats:
        return ReleaseStats(
            requests=self.requests,
            responses_4xx=self.responses_4xx,
            responses_5xx=self.responses_5xx,
            transport_errors=self.transport_errors,
            latency_sum=self.latency_sum,
            latency_counts=tuple(self.counts),
        )

    def samples_since(self, since: float) -> list[list[Any]]:
        return [[ts, lat, st] for ts, lat, st in self.samples if ts > since]

    def to_json(self) -> dict[str, Any]:
        """The counters as /stats shows them, with the count per status code."""
        return {**self.snapshot().to_json(), "codes": {str(c): n for c, n in self.codes.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseCounters:
        """Counters (no samples) from `to_json`: to merge several routers' into one."""
        c = cls(1)
        c.requests = int(data.get("requests", 0))
        c.responses_4xx = int(data.get("responses_4xx", 0))
        c.responses_5xx = int(data.get("responses_5xx", 0))
        c.transport_errors = int(data.get("transport_errors", 0))
        c.latency_sum = float(data.get("latency_sum", 0.0))
        counts = [int(n) for n in data.get("latency_counts", ())]
        c.counts = counts + [0] * (len(c.counts) - len(counts))
        c.codes = {int(code): int(n) for code, n in data.get("codes", {}).items()}
        return c

    def add(self, other: ReleaseCounters) -> None:
        self.requests += other.requests
        self.responses_4xx += other.responses_4xx
        self.responses_5xx += other.responses_5xx
        self.transport_errors += other.transport_errors
        self.latency_sum += other.latency_sum
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def prometheus_text(
    releases: dict[str, ReleaseCounters],
    backends: Iterable[tuple[str, str, int]],  # (release, address, inflight)
) -> str:
    """Prometheus text exposition format 0.0.4 of the router's counters."""
    out: list[str] = [
        "# HELP zerodown_requests_total Responses sent to clients, by release and status code.",
        "# TYPE zerodown_requests_total counter",
    ]
    for name, c in sorted(releases.items()):
        for code, n in sorted(c.codes.items()):
            out.append(f'zerodown_requests_total{{release="{_label(name)}",code="{code}"}} {n}')
    out += [
        "# HELP zerodown_request_errors_total Requests that got no response from any backend.",
        "# TYPE zerodown_request_errors_total counter",
    ]
    for name, c in sorted(releases.items()):
        out.append(
            f'zerodown_request_errors_total{{release="{_label(name)}"}} {c.transport_errors}'
        )
    out += [
        "# HELP zerodown_request_seconds Time from request headers to the last response byte.",
        "# TYPE zerodown_request_seconds histogram",
    ]
    for name, c in sorted(releases.items()):
        rel = _label(name)
        cumulative = 0
        for bound, n in zip((*LATENCY_BUCKETS, None), c.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound is None else _num(bound)
            out.append(f'zerodown_request_seconds_bucket{{release="{rel}",le="{le}"}} {cumulative}')
        out.append(f'zerodown_request_seconds_sum{{release="{rel}"}} {_num(c.latency_sum)}')
        out.append(f'zerodown_request_seconds_count{{release="{rel}"}} {cumulative}')
    out += [
        "# HELP zerodown_backend_inflight Requests in flight to each backend.",
        "# TYPE zerodown_backend_inflight gauge",
    ]
    for release, address, inflight in sorted(backends):
        out.append(
            f'zerodown_backend_inflight{{release="{_label(release)}",backend="{_label(address)}"}}'
            f" {inflight}"
        )
    return "\n".join(out) + "\n"


TUNNEL_SIDES = ("client", "backend", "router")


class TunnelCounts:
    """Upgraded connections (WebSockets...) of one release: opened, open now, and closed by
    which side (`router`: the router closed it, at a deploy's `drain.upgraded` or its own stop)."""

    __slots__ = ("closed", "open", "opened")

    def __init__(self) -> None:
        self.opened = 0
        self.open = 0
        self.closed = dict.fromkeys(TUNNEL_SIDES, 0)

    def to_json(self) -> dict[str, Any]:
        return {"opened": self.opened, "open": self.open, "closed_by": dict(self.closed)}


def merge_stats_json(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several routers' /stats (router.workers: one per worker) as one: counters, in-flight
    requests, tunnels, held requests and connections added; the oldest table's generation."""
    releases: dict[str, ReleaseCounters] = {}
    backends: dict[str, dict[str, Any]] = {}
    merged: dict[str, Any] = {"generation": min((p["generation"] for p in parts), default=0)}
    for part in parts:
        for name, data in part["releases"].items():
            c = ReleaseCounters.from_json(data)
            if name in releases:
                releases[name].add(c)
            else:
                releases[name] = c
        for address, b in part["backends"].items():
            backends[address] = _added(backends.get(address), b)
        for key in ("tunnels", "hold", "clients"):
            merged[key] = _added(merged.get(key), part.get(key))
    merged["releases"] = {n: c.to_json() for n, c in releases.items()}
    merged["backends"] = backends
    return merged


LONGEST = frozenset({"seconds_left"})  # a time left (a hold's): the longest, not the sum


def merge_answers(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' answers as one (a hold's; the hold, tunnels and clients of /stats):
    see `_added`."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged = _added(merged, part)
    return merged


def _added(a: Any, b: Any, key: str = "") -> Any:
    """`b` added into `a`: numbers summed (a time left: the longest), booleans or-ed, dicts key
    by key, the rest a's."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, bool):
        return a or b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return max(a, b) if key in LONGEST else a + b
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _added(a.get(k), b.get(k), k) for k in {**a, **b}}
    return a
