"""Routing of the router: weights, sticky sessions, match rules, preview listener."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from router_kit import BackendProc, RouterProc, name_of, table

from zerodown.core.routes import Match, Sticky


@pytest.mark.slow
def test_weights_hold_within_three_points(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    for generation, (wa, wb) in enumerate([(20, 80), (3, 1)], start=1):
        router.apply(table(generation, ("a", wa, [backend_a]), ("b", wb, [backend_b])))
        with httpx.Client(base_url=router.url, trust_env=False, timeout=10) as c:
            got = Counter(name_of(c.get("/")) for _ in range(2000))
        share_a = 100 * got["a"] / 2000
        assert abs(share_a - 100 * wa / (wa + wb)) <= 3, (wa, wb, got)


@pytest.mark.slow  # a second or more: the full suite runs it
def test_sticky_cookie_keeps_clients_while_weight_grows(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    sticky = Sticky(cookie="zd_sticky")
    router.apply(table(1, ("new", 10, [backend_a]), ("old", 90, [backend_b]), sticky=sticky))
    clients = [httpx.Client(base_url=router.url, trust_env=False, timeout=10) for _ in range(60)]
    try:
        first = clients[0].get("/")
        set_cookie = first.headers["set-cookie"]
        assert set_cookie.startswith("zd_sticky=")
        assert "Path=/" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        on_new: set[int] = set()
        for generation, w in enumerate((10, 30, 60, 100), start=1):
            router.apply(
                table(
                    generation,
                    ("new", w, [backend_a]),
                    ("old", 100 - w, [backend_b]),
                    sticky=sticky,
                )
            )
            now_new = set()
            for i, c in enumerate(clients):
                names = {name_of(c.get("/")) for _ in range(3)}
                assert len(names) == 1, f"client {i} flipped within one table: {names}"
                if names == {"a"}:
                    now_new.add(i)
            assert on_new <= now_new, "a client went back from the new release to the old"
            on_new = now_new
        assert len(on_new) == len(clients)
        # A known cookie is not set again.
        assert "set-cookie" not in clients[0].get("/").headers
    finally:
        for c in clients:
            c.close()


def test_sticky_header(router: RouterProc, backend_a: BackendProc, backend_b: BackendProc) -> None:
    sticky = Sticky(header="X-User")
    with httpx.Client(base_url=router.url, trust_env=False, timeout=10) as c:
        seen: dict[str, str] = {}
        for generation, w in enumerate((20, 50, 80), start=1):
            router.apply(
                table(
                    generation,
                    ("new", w, [backend_a]),
                    ("old", 100 - w, [backend_b]),
                    sticky=sticky,
                )
            )
            for user in (f"user-{i}" for i in range(40)):
                names = {name_of(c.get("/", headers={"X-User": user})) for _ in range(2)}
                assert len(names) == 1
                (name,) = names
                assert not (seen.get(user) == "a" and name == "b")
                seen[user] = name
        assert "set-cookie" not in c.get("/").headers  # header stickiness sets no cookie


def test_match_by_header_and_cookie(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    router.apply(
        table(
            1,
            ("canary", 0, [backend_a]),
            ("stable", 100, [backend_b]),
            matches=(
                Match("canary", "always", header="X-Canary"),
                Match("canary", "yes", cookie="beta"),
            ),
        )
    )
    with httpx.Client(base_url=router.url, trust_env=False, timeout=10) as c:
        for _ in range(10):
            assert name_of(c.get("/", headers={"X-Canary": "always"})) == "a"
            assert name_of(c.get("/", headers={"X-Canary": "sometimes"})) == "b"
            assert name_of(c.get("/", headers={"Cookie": "x=1; beta=yes"})) == "a"
            assert name_of(c.get("/", headers={"Cookie": "beta=no"})) == "b"
            assert name_of(c.get("/")) == "b"


def test_preview_listener(
    router: RouterProc, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as c:
        router.apply(table(1, ("blue", 100, [backend_a]), ("green", 0, [backend_b])))
        r = c.get(router.preview_url)
        assert r.status_code == 503
        router.apply(
            table(2, ("blue", 100, [backend_a]), ("green", 0, [backend_b]), preview="green")
        )
        assert {name_of(c.get(router.preview_url)) for _ in range(20)} == {"b"}
        assert {name_of(c.get(router.url)) for _ in range(20)} == {"a"}
        router.apply(table(3, ("blue", 100, [backend_a]), ("green", 0, []), preview="green"))
        assert c.get(router.preview_url).status_code == 503
    stats = router.stats()["releases"]
    assert stats["green"]["requests"] == 21 and stats["green"]["transport_errors"] == 1
