"""A route table as HAProxy state, without I/O: servers, weights, map contents, and the rules
that only a configuration (a reload) can change.

The layout zerodown writes (config.py renders it):

- `zd_split`: every routed instance, `balance roundrobin`, each server's weight its pool's share
  divided among the pool's instances (scaled to HAProxy's 1-256). Round-robin over weights is
  exact over every cycle, like the built-in router's deck.
- `zd_s0` … `zd_s7`: one slot per release in the table (`balance leastconn`, like the built-in
  router's least in-flight choice), for header and cookie routes, sticky users and the preview
  listener. Which release holds which slot, and which slot each route or bucket leads to, are
  entries of map files that the Runtime API changes atomically (`prepare map` / `commit map`).
- Rules (the header and cookie names routes look at, the sticky key, the listeners) are the
  configuration; changing one is the only change that reloads HAProxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from zerodown.core.routes import Pool, RouteTable

SLOTS = 8
MAX_WEIGHT = 256
SPLIT = "zd_split"
NONE = "zd_none"  # no servers: 503
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def slot_backend(slot: int) -> str:
    return f"zd_s{slot}"


def server_name(instance: str) -> str:
    """HAProxy server names allow letters, digits and `_.:-`."""
    return _NAME_SAFE.sub("_", instance)[:100] or "_"


@dataclass(frozen=True, slots=True)
class Key:
    """What a route or the sticky rule reads: a header or a cookie, by name."""

    kind: str  # "header" | "cookie"
    name: str


@dataclass(frozen=True, slots=True)
class Rules:
    """The part of the configuration a route table needs; a change here is a reload."""

    listen: str
    preview_listen: str | None
    header_timeout: float
    match_keys: tuple[Key, ...] = ()
    sticky: Key | None = None

    def with_table(self, table: RouteTable) -> Rules:
        """These rules, grown by whatever `table` needs that they lack (never shrunk: a rule
        with an empty map costs nothing and saves a reload when it comes back)."""
        keys = list(self.match_keys)
        for key in match_keys(table):
            if key not in keys:
                keys.append(key)
        sticky = self.sticky
        if table.sticky is not None:
            sticky = (
                Key("cookie", table.sticky.cookie)
                if table.sticky.cookie
                else Key("header", table.sticky.header or "")
            )
        return Rules(self.listen, self.preview_listen, self.header_timeout, tuple(keys), sticky)


def match_keys(table: RouteTable) -> list[Key]:
    keys: list[Key] = []
    for m in table.matches:
        key = Key("header", m.header) if m.header else Key("cookie", m.cookie or "")
        if key not in keys:
            keys.append(key)
    return keys


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    address: str
    release: str
    slot: int
    split_weight: int  # 0: in no weighted traffic (a weight-0 pool, or preview only)


@dataclass(frozen=True, slots=True)
class Desired:
    """Everything HAProxy holds for one route table."""

    servers: tuple[Server, ...]
    slots: dict[str, int]  # release -> slot
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # map name -> entries

    def by_name(self) -> dict[str, Server]:
        return {s.name: s for s in self.servers}


class TooManyReleases(ValueError):
    pass


def assign_slots(releases: Iterable[str], current: dict[str, int]) -> dict[str, int]:
    """A slot per release, keeping the slot a release already holds (its routes and sticky
    users keep working while the table changes around it)."""
    wanted = list(dict.fromkeys(releases))
    slots = {r: s for r, s in current.items() if r in wanted}
    free = [s for s in range(SLOTS) if s not in slots.values()]
    for release in wanted:
        if release not in slots:
            if not free:
                raise TooManyReleases(
                    f"a route table with more than {SLOTS} releases at once: HAProxy has "
                    f"{SLOTS} release slots"
                )
            slots[release] = free.pop(0)
    return slots


def eligible(pools: Iterable[Pool]) -> list[tuple[Pool, int]]:
    """Pools that take weighted traffic, with their weights: weight > 0 and backends; when none
    has both, every pool with backends at an equal share (the built-in router's rule)."""
    pools = list(pools)
    chosen = [(p, p.weight) for p in pools if p.weight > 0 and p.backends]
    return chosen or [(p, 1) for p in pools if p.backends]


def split_weights(pools: list[tuple[Pool, int]]) -> dict[str, int]:
    """Server weight per address: each pool's share divided among its backends, scaled so the
    largest is MAX_WEIGHT (a share of 1% beside 99% on ten instances is still 26)."""
    total = sum(w for _, w in pools)
    per_server: dict[str, float] = {}
    for pool, weight in pools:
        for b in pool.backends:
            per_server[b.address] = per_server.get(b.address, 0.0) + weight / total / len(
                pool.backends
            )
    top = max(per_server.values(), default=0.0)
    return {a: max(1, round(MAX_WEIGHT * v / top)) for a, v in per_server.items()}


def buckets(pools: list[tuple[Pool, int]], slots: dict[str, int]) -> dict[str, str]:
    """Sticky bucket 0-99 -> slot backend: the first pool (table order) whose cumulative share
    `100 * cumsum(weight) / total` is above the bucket (the built-in router's rule)."""
    total = sum(w for _, w in pools)
    out: dict[str, str] = {}
    if total <= 0:
        return out
    thresholds: list[tuple[float, str]] = []
    cumulative = 0
    for pool, weight in pools:
        cumulative += weight
        thresholds.append((100.0 * cumulative / total, slot_backend(slots[pool.release])))
    for bucket in range(100):
        out[str(bucket)] = next((b for t, b in thresholds if bucket < t), thresholds[-1][1])
    return out


def desired(table: RouteTable, rules: Rules, current_slots: dict[str, int]) -> Desired:
    """The servers and map contents of `table` (rules must already cover it)."""
    slots = assign_slots((p.release for p in table.pools), current_slots)
    chosen = eligible(table.pools)
    weights = split_weights(chosen) if chosen else {}
    servers: dict[str, Server] = {}
    for pool in table.pools:
        for b in pool.backends:
            name = server_name(b.instance)
            if name not in servers:
                servers[name] = Server(
                    name, b.address, pool.release, slots[pool.release], weights.get(b.address, 0)
                )
    with_backends = {p.release for p in table.pools if p.backends}
    maps: dict[str, dict[str, str]] = {
        "servers": {s.name: s.release for s in servers.values()},
        "meta": {"generation": str(table.generation)},
        "buckets": buckets(chosen, slots) if rules.sticky is not None else {},
    }
    if table.preview is not None and table.preview in with_backends:
        maps["meta"]["preview"] = slot_backend(slots[table.preview])
    for n, key in enumerate(rules.match_keys):
        entries: dict[str, str] = {}
        for m in table.matches:
            mine = key == (Key("header", m.header) if m.header else Key("cookie", m.cookie or ""))
            if mine and m.release in with_backends and m.value not in entries:
                entries[m.value] = slot_backend(slots[m.release])
        maps[f"match{n}"] = entries
    for release, slot in slots.items():
        maps["meta"][f"slot{slot}"] = release
    return Desired(servers=tuple(servers.values()), slots=slots, maps=maps)


def map_names(rules: Rules) -> list[str]:
    """The maps the configuration of `rules` loads (only those can be changed at runtime)."""
    return [
        "servers",
        *(["meta"] if rules.preview_listen is not None else []),
        *(["buckets"] if rules.sticky is not None else []),
        *(f"match{n}" for n in range(len(rules.match_keys))),
    ]
