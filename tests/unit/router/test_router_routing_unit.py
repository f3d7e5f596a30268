"""Routing decisions of the built-in router, without sockets."""

from __future__ import annotations

import random
from collections import Counter

import mmh3
import pytest

from zerodown.core.routes import Backend, Match, Pool, RouteTable, Sticky
from zerodown.routers.proxy.routing import CompiledTable, deck_counts, parse_cookies


class FakeBackend:
    def __init__(self, address: str) -> None:
        self.address = address
        self.inflight = 0
        self.failed_until = 0.0


def compile_table(t: RouteTable, seed: int = 1) -> CompiledTable[FakeBackend]:
    made: dict[str, FakeBackend] = {}

    def backend_for(address: str, release: str) -> FakeBackend:
        return made.setdefault(address, FakeBackend(address))

    return CompiledTable(t, backend_for, random.Random(seed))


def pool(release: str, weight: int, n: int = 1) -> Pool:
    return Pool(
        release, weight, tuple(Backend(f"{release}:{i + 1}", f"{release}{i}") for i in range(n))
    )


@pytest.mark.parametrize(
    ("weights", "size", "expected"),
    [
        ([10, 90], 1000, [10, 90]),
        ([0, 5], 1000, [0, 5]),
        ([1, 1, 1], 2, [1, 1, 0]),
        ([2000, 2000, 1000], 1000, [400, 400, 200]),
        ([0, 0], 1000, [0, 0]),
    ],
)
def test_deck_counts(weights: list[int], size: int, expected: list[int]) -> None:
    assert deck_counts(weights, size) == expected


@pytest.mark.parametrize("weights", [(10, 90), (33, 67), (1, 1, 1), (5, 0, 95)])
def test_weighted_shares_are_exact_over_a_deck(weights: tuple[int, ...]) -> None:
    t = compile_table(RouteTable(1, tuple(pool(f"r{i}", w) for i, w in enumerate(weights))))
    n = 2000
    got = Counter(t.choose({})[0].release for _ in range(n))  # type: ignore[union-attr]
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(100 * got[f"r{i}"] / n - 100 * w / total) <= 1


def test_sticky_bucket_picks_first_pool_above_it() -> None:
    t = compile_table(RouteTable(1, (pool("new", 25), pool("old", 75)), sticky=Sticky(cookie="zd")))
    for key in ("alice", "bob", "carol", "dave", "eve"):
        bucket = mmh3.hash(key, signed=False) % 100
        chosen, new_key = t.choose({b"cookie": f"zd={key}".encode()})
        assert new_key is None
        assert chosen is not None and chosen.release == ("new" if bucket < 25 else "old")


def test_sticky_client_never_flips_back_while_new_weight_grows() -> None:
    keys = [f"user{i}" for i in range(300)]
    on_new: set[str] = set()
    for w in (0, 5, 20, 50, 90, 100):
        t = compile_table(
            RouteTable(1, (pool("new", w), pool("old", 100 - w)), sticky=Sticky(header="X-User"))
        )
        now_new = {k for k in keys if t.choose({b"x-user": k.encode()})[0].release == "new"}  # type: ignore[union-attr]
        assert on_new <= now_new
        on_new = now_new
    assert on_new == set(keys)


def test_sticky_cookie_is_made_when_absent() -> None:
    t = compile_table(RouteTable(1, (pool("a", 50), pool("b", 50)), sticky=Sticky(cookie="zd")))
    chosen, key = t.choose({})
    assert key is not None and len(key) == 16
    assert chosen is t.by_key(key)


def test_matches_win_over_weights_and_fall_back_without_backends() -> None:
    t = compile_table(
        RouteTable(
            1,
            (pool("canary", 0), pool("stable", 100), Pool("empty", 0)),
            matches=(
                Match("canary", "1", header="X-Canary"),
                Match("canary", "yes", cookie="beta"),
                Match("empty", "1", header="X-Empty"),
            ),
        )
    )
    assert t.interest == frozenset({b"x-canary", b"x-empty", b"cookie"})
    assert t.choose({b"x-canary": b"1"})[0].release == "canary"  # type: ignore[union-attr]
    assert t.choose({b"x-canary": b"2"})[0].release == "stable"  # type: ignore[union-attr]
    assert t.choose({b"cookie": b"a=b; beta=yes"})[0].release == "canary"  # type: ignore[union-attr]
    assert t.choose({b"cookie": b"beta=no"})[0].release == "stable"  # type: ignore[union-attr]
    assert t.choose({b"x-empty": b"1"})[0].release == "stable"  # type: ignore[union-attr]


def test_pool_without_backends_falls_back_and_empty_table_has_none() -> None:
    t = compile_table(RouteTable(1, (Pool("gone", 100), pool("warm", 0))))
    assert t.choose({})[0].release == "warm"  # type: ignore[union-attr]
    assert compile_table(RouteTable(1)).choose({}) == (None, None)
    assert compile_table(RouteTable(1, (Pool("gone", 100),))).choose({}) == (None, None)


def test_least_inflight_then_round_robin() -> None:
    t = compile_table(RouteTable(1, (pool("a", 1, n=3),)))
    p = t.pools[0]
    picks = [p.pick(0.0).address for _ in range(6)]  # type: ignore[union-attr]
    assert Counter(picks) == {"a:1": 2, "a:2": 2, "a:3": 2}
    p.backends[0].inflight = 0
    p.backends[1].inflight = 3
    p.backends[2].inflight = 1
    assert {p.pick(0.0).address for _ in range(5)} == {"a:1"}  # type: ignore[union-attr]
    p.backends[0].failed_until = 10.0  # recently refused: last choice
    assert p.pick(5.0).address == "a:3"  # type: ignore[union-attr]
    assert p.pick(5.0, exclude=[p.backends[2], p.backends[1]]).address == "a:1"  # type: ignore[union-attr]


def test_parse_cookies() -> None:
    assert parse_cookies(b'a=1; b = "2" ;c=; a=9; junk') == {"a": "1", "b": "2", "c": ""}
