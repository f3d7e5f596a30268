"""The route table: what the router must do, as plain data.

The controller computes a RouteTable and hands it whole to a router driver, which applies it
atomically. The same table drives every strategy:

- rolling: one pool per live release, weights proportional to ready instances;
- blue-green: one pool at weight 100, and `preview` names the release on the preview listener;
- canary: the canary pool first with the canary weight, then the stable pool.

Pools are ordered: a sticky client hashes to a bucket 0-99 and gets the first pool whose
cumulative share (weight / total * 100) is above its bucket. Putting the newest release first
means a user who saw it keeps seeing it while its weight only grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Backend:
    address: str  # "127.0.0.1:9001"
    instance: str  # instance id, for logs and per-backend stats


@dataclass(frozen=True, slots=True)
class Pool:
    release: str
    weight: int  # relative share of traffic that no match rule claimed; 0 = none
    backends: tuple[Backend, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """Requests carrying this header or cookie value go to `release`, whatever the weights."""

    release: str
    value: str
    header: str | None = None
    cookie: str | None = None


@dataclass(frozen=True, slots=True)
class Sticky:
    """Where the sticky key comes from; the router sets the cookie when it is absent."""

    cookie: str | None = None
    header: str | None = None


@dataclass(frozen=True, slots=True)
class RouteTable:
    generation: int
    pools: tuple[Pool, ...] = ()
    matches: tuple[Match, ...] = ()
    sticky: Sticky | None = None
    preview: str | None = None  # release served on the preview listener, if any

    def addresses(self) -> frozenset[str]:
        return frozenset(b.address for p in self.pools for b in p.backends)

    def same_routing(self, other: RouteTable) -> bool:
        """Equal except for the generation number."""
        return (self.pools, self.matches, self.sticky, self.preview) == (
            other.pools,
            other.matches,
            other.sticky,
            other.preview,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "pools": [
                {
                    "release": p.release,
                    "weight": p.weight,
                    "backends": [
                        {"address": b.address, "instance": b.instance} for b in p.backends
                    ],
                }
                for p in self.pools
            ],
            "matches": [
                {"release": m.release, "value": m.value, "header": m.header, "cookie": m.cookie}
                for m in self.matches
            ],
            "sticky": (
                None
                if self.sticky is None
                else {"cookie": self.sticky.cookie, "header": self.sticky.header}
            ),
            "preview": self.preview,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RouteTable:
        sticky = data.get("sticky")
        return cls(
            generation=int(data["generation"]),
            pools=tuple(
                Pool(
                    release=str(p["release"]),
                    weight=int(p["weight"]),
                    backends=tuple(
                        Backend(address=str(b["address"]), instance=str(b["instance"]))
                        for b in p.get("backends", ())
                    ),
                )
                for p in data.get("pools", ())
            ),
            matches=tuple(
                Match(
                    release=str(m["release"]),
                    value=str(m["value"]),
                    header=m.get("header"),
                    cookie=m.get("cookie"),
                )
                for m in data.get("matches", ())
            ),
            sticky=None if not sticky else Sticky(sticky.get("cookie"), sticky.get("header")),
            preview=data.get("preview"),
        )


# Upper bounds (seconds) of the router's latency histogram buckets; the last bucket is +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class ReleaseStats:
    """Cumulative counters of one release since the router started."""

    requests: int = 0
    responses_4xx: int = 0
    responses_5xx: int = 0
    transport_errors: int = 0  # no response from any instance: the client got a 502/503/504
    latency_sum: float = 0.0
    latency_counts: tuple[int, ...] = field(default=())  # per LATENCY_BUCKETS, plus +Inf last

    @property
    def errors(self) -> int:
        return self.responses_5xx + self.transport_errors

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "responses_4xx": self.responses_4xx,
            "responses_5xx": self.responses_5xx,
            "transport_errors": self.transport_errors,
            "latency_sum": self.latency_sum,
            "latency_counts": list(self.latency_counts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseStats:
        return cls(
            requests=int(data.get("requests", 0)),
            responses_4xx=int(data.get("responses_4xx", 0)),
            responses_5xx=int(data.get("responses_5xx", 0)),
            transport_errors=int(data.get("transport_errors", 0)),
            latency_sum=float(data.get("latency_sum", 0.0)),
            latency_counts=tuple(int(c) for c in data.get("latency_counts", ())),
        )
