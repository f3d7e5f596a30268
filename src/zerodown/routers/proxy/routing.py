"""Routing decisions of the built-in router, without I/O.

A RouteTable is compiled once per apply into a `CompiledTable`, so the per-request work is a few
dict look-ups: matches first, then the sticky bucket, then a weighted choice, then the least-busy
backend of the chosen pool.

Weighted choice uses a shuffled "deck": each pool gets a number of cards proportional to its
weight (largest-remainder rounding to at most DECK_SIZE cards), the deck is shuffled, and requests
take cards in order, reshuffling when it runs out. Each request still lands on a random pool, but
over every deck the shares are exact to the card, so a few thousand requests already show the
configured weights (a plain random draw drifts by several points at that count).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import mmh3

from zerodown.core.routes import RouteTable

DECK_SIZE = 1000
_FAILED = 1 << 40  # added to the in-flight count of a backend that just refused a connection


class BackendLike(Protocol):
    inflight: int
    failed_until: float


B = TypeVar("B", bound=BackendLike)


class CompiledPool(Generic[B]):
    __slots__ = ("backends", "release", "rr", "weight")

    def __init__(self, release: str, weight: int, backends: list[B]) -> None:
        self.release = release
        self.weight = weight
        self.backends = backends
        self.rr = 0

    def pick(self, now: float, exclude: Sequence[B] = ()) -> B | None:
        """Least in-flight backend, round-robin among ties; recently failed ones last."""
        backends = self.backends
        n = len(backends)
        if n == 1:
            only = backends[0]
            return None if exclude and only in exclude else only
        if n == 0:
            return None
        start = self.rr
        self.rr = (start + 1) % n
        best: B | None = None
        best_score = 0
        for i in range(n):
            b = backends[(start + i) % n]
            if exclude and b in exclude:
                continue
            score = b.inflight + (_FAILED if b.failed_until > now else 0)
            if best is None or score < best_score:
                best, best_score = b, score
        return best


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    release: str
    value: str
    header: bytes | None  # lower-case header name
    cookie: str | None


def deck_counts(weights: Sequence[int], size: int = DECK_SIZE) -> list[int]:
    """Cards per pool: exact weights when they fit in `size`, else largest-remainder shares."""
    total = sum(weights)
    if total <= 0:
        return [0 for _ in weights]
    if total <= size:
        return list(weights)
    exact = [w * size / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: size - sum(counts)]:
        counts[i] += 1
    return counts


class CompiledTable(Generic[B]):
    """A route table ready for the hot path. `backend_for` maps an address to its live state."""

    def __init__(
        self,
        table: RouteTable,
        backend_for: Callable[[str, str], B],
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.rng = rng or random.Random()
        self.pools: list[CompiledPool[B]] = [
            CompiledPool(
                p.release, p.weight, [backend_for(b.address, p.release) for b in p.backends]
            )
            for p in table.pools
        ]
        self.by_release: dict[str, CompiledPool[B]] = {}
        for p in self.pools:
            self.by_release.setdefault(p.release, p)
        self.matches = [
            CompiledMatch(
                m.release,
                m.value,
                m.header.lower().encode("latin-1") if m.header else None,
                m.cookie,
            )
            for m in table.matches
        ]
        sticky = table.sticky
        self.sticky_cookie: str | None = sticky.cookie if sticky else None
        self.sticky_header: bytes | None = (
            sticky.header.lower().encode("latin-1") if sticky and sticky.header else None
        )
        # Header names (lower-case) the router has to look at for this table.
        interest = {m.header for m in self.matches if m.header}
        if self.sticky_header:
            interest.add(self.sticky_header)
        if self.sticky_cookie or any(m.cookie for m in self.matches):
            interest.add(b"cookie")
        self.interest: frozenset[bytes] = frozenset(interest)
        # No matches and no stickiness: a request's pool is a weighted draw, nothing to look at.
        self.plain = not self.matches and self.sticky_cookie is None and self.sticky_header is None
        self.preview: CompiledPool[B] | None = (
            self.by_release.get(table.preview) if table.preview else None
        )
        # Pools that can take weighted traffic: weight > 0 and at least one backend. When none
        # has both, any pool with backends takes an equal share rather than answering 503.
        eligible = [p for p in self.pools if p.weight > 0 and p.backends]
        weights = [p.weight for p in eligible]
        if not eligible:
            eligible = [p for p in self.pools if p.backends]
            weights = [1 for _ in eligible]
        self.eligible = eligible
        total = sum(weights)
        cumulative = 0
        self.thresholds: list[float] = []
        for w in weights:
            cumulative += w
            self.thresholds.append(100.0 * cumulative / total)
        self.deck: list[CompiledPool[B]] = []
        for pool, count in zip(eligible, deck_counts(weights), strict=True):
            self.deck.extend([pool] * count)
        self.rng.shuffle(self.deck)
        self.deck_pos = 0
        self.single = eligible[0] if len(eligible) == 1 else None  # no draw needed

    @property
    def generation(self) -> int:
        return self.table.generation

    def weighted(self) -> CompiledPool[B] | None:
        if self.single is not None:
            return self.single
        deck = self.deck
        if not deck:
            return None
        pos = self.deck_pos
        if pos >= len(deck):
            self.rng.shuffle(deck)
            pos = 0
        self.deck_pos = pos + 1
        return deck[pos]

    def by_key(self, key: str) -> CompiledPool[B] | None:
        """Sticky choice: bucket 0-99, first pool whose cumulative share is above it."""
        bucket = mmh3.hash(key, signed=False) % 100
        for pool, threshold in zip(self.eligible, self.thresholds, strict=True):
            if threshold > bucket:
                return pool
        return self.eligible[-1] if self.eligible else None

    def matched(self, headers: dict[bytes, bytes], cookies: dict[str, str] | None) -> str | None:
        for m in self.matches:
            if m.header is not None:
                v = headers.get(m.header)
                if v is not None and v.decode("latin-1") == m.value:
                    return m.release
            elif m.cookie is not None and cookies is not None and cookies.get(m.cookie) == m.value:
                return m.release
        return None

    def choose(self, headers: dict[bytes, bytes]) -> tuple[CompiledPool[B] | None, str | None]:
        """The pool for a request (None: no backend at all) and a new sticky key to set as cookie.

        `headers` holds only the header names in `self.interest`, lower-cased.
        """
        cookies = parse_cookies(headers[b"cookie"]) if b"cookie" in headers else None
        if self.matches:
            release = self.matched(headers, cookies)
            if release is not None:
                pool = self.by_release.get(release)
                if pool is not None and pool.backends:
                    return pool, None
        if self.sticky_cookie is not None or self.sticky_header is not None:
            key: str | None = None
            new_key: str | None = None
            if self.sticky_cookie is not None and cookies is not None:
                key = cookies.get(self.sticky_cookie)
            if key is None and self.sticky_header is not None:
                raw = headers.get(self.sticky_header)
                key = raw.decode("latin-1") if raw is not None else None
            if key is None and self.sticky_cookie is not None:
                key = new_key = f"{self.rng.getrandbits(64):016x}"
            if key is not None:
                return self.by_key(key), new_key
        return self.weighted(), None

    def fallbacks(self, first: CompiledPool[B] | None) -> list[CompiledPool[B]]:
        """Pools to try after `first` failed: the others that have backends, in table order."""
        return [p for p in self.pools if p is not first and p.backends]


def parse_cookies(raw: bytes) -> dict[str, str]:
    """Cookie header → name: value (first one wins), tolerant of odd spacing."""
    out: dict[str, str] = {}
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.partition("=")
        if sep:
            name = name.strip()
            if name and name not in out:
                out[name] = value.strip().strip('"')
    return out
