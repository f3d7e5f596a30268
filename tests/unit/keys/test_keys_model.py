"""The key life cycle as a pure function of (keyring, now): fake clock, no sleeping."""

from __future__ import annotations

import pytest

from zerodown.keys.model import (
    KeyringError,
    KeyState,
    Policy,
    active_key,
    advance,
    initial,
    published_keys,
    rotate,
    timeline,
)

P = Policy(jwks_cache_ttl=300, max_token_lifetime=3600, clock_skew=60)
T0 = 1_000_000.0


def states(ring, now):  # type: ignore[no-untyped-def]
    return {t.kid: t.state.value for t in timeline(ring, now)}


def test_first_key_signs_at_once() -> None:
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    assert states(ring, T0) == {"a": "active"}
    assert active_key(ring, T0).kid == "a"


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (0, {"a": "active", "b": "next"}),
        (299.9, {"a": "active", "b": "next"}),  # b published, verifiers may not have it yet
        (300, {"a": "retiring", "b": "active"}),  # cache time passed: b signs, a verifies only
        (300 + 3600 + 59.9, {"a": "retiring", "b": "active"}),  # a token of a may still be live
        (300 + 3600 + 60, {"a": "retired", "b": "active"}),  # lifetime + skew after a's last use
    ],
)
def test_rotation_timeline(offset: float, expected: dict[str, str]) -> None:
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    ring = rotate(ring, kid="b", alg="ES256", public_jwk={}, now=T0)
    assert states(ring, T0 + offset) == expected
    assert active_key(ring, T0 + offset).kid == ("a" if offset < 300 else "b")
    published = {k.kid for k in published_keys(ring, T0 + offset)}
    assert published == {kid for kid, s in expected.items() if s != "retired"}


def test_next_key_is_published_at_least_the_cache_time_before_it_signs() -> None:
    for ttl in (0, 1, 300, 86400):
        policy = Policy(jwks_cache_ttl=ttl)
        ring = initial(policy, kid="a", alg="RS256", public_jwk={}, now=T0)
        ring = rotate(ring, kid="b", alg="RS256", public_jwk={}, now=T0 + 5)
        b = ring.keys[-1]
        assert b.activates_at - b.published_at >= ttl


def test_exactly_one_active_key_at_every_instant() -> None:
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    ring = rotate(ring, kid="b", alg="EdDSA", public_jwk={}, now=T0 + 10)
    ring = rotate(ring, kid="c", alg="EdDSA", public_jwk={}, now=T0 + 400)
    for step in range(0, 10_000, 7):
        assert list(states(ring, T0 + step).values()).count("active") == 1


def test_advance_reports_transitions_at_the_instant_the_rule_fixes() -> None:
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    ring = rotate(ring, kid="b", alg="EdDSA", public_jwk={}, now=T0)
    later, moves = advance(ring, T0 + 10_000)  # noticed late, dated right
    assert [(m.kid, m.old.value, m.new.value, m.at) for m in moves] == [
        ("a", "active", "retired", T0 + 300 + 3660),
        ("b", "next", "active", T0 + 300),
    ]
    assert [k.state for k in later.keys] == [KeyState.RETIRED, KeyState.ACTIVE]
    assert advance(later, T0 + 10_000)[1] == ()  # idempotent


def test_rotation_while_a_key_waits_is_refused() -> None:
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    ring = rotate(ring, kid="b", alg="EdDSA", public_jwk={}, now=T0)
    with pytest.raises(KeyringError, match="already waiting"):
        rotate(ring, kid="c", alg="EdDSA", public_jwk={}, now=T0 + 1)
    ring = rotate(ring, kid="c", alg="EdDSA", public_jwk={}, now=T0 + 300)  # b active: fine
    assert states(ring, T0 + 300) == {"a": "retiring", "b": "active", "c": "next"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: rotate(r, kid="a", alg="EdDSA", public_jwk={}, now=T0), "already in"),
        (lambda r: rotate(r, kid="z", alg="HS256", public_jwk={}, now=T0), "not supported"),
    ],
)
def test_bad_rotations(call, message: str) -> None:  # type: ignore[no-untyped-def]
    ring = initial(P, kid="a", alg="EdDSA", public_jwk={}, now=T0)
    with pytest.raises(KeyringError, match=message):
        call(ring)


def test_empty_ring_errors_say_run_init() -> None:
    from zerodown.keys.model import Keyring

    with pytest.raises(KeyringError, match="keys init"):
        active_key(Keyring(), T0)
    with pytest.raises(KeyringError, match="keys init"):
        rotate(Keyring(), kid="a", alg="EdDSA", public_jwk={}, now=T0)


def test_negative_policy_is_refused() -> None:
    with pytest.raises(KeyringError, match="clock_skew"):
        Policy(clock_skew=-1)
