"""The signing-key ring as data, and its life cycle as a pure function of (keyring, now).

A key moves next → active → retiring → retired:

- next: published in the JWKS, not signing. It stays so for at least the verifiers' JWKS cache
  time, so every verifier has fetched it before the first token it signs reaches them.
- active: the one key that signs. Exactly one at any time once the ring exists.
- retiring: replaced, still published, so tokens it signed keep verifying until they expire:
  the longest token lifetime plus the clock skew after its last signature.
- retired: gone from the JWKS; its private key is deleted.

Every time is derived from two stored instants per key (published_at, activates_at) and the
policy, so every process that reads the ring at the same `now` agrees on the active key without
talking to the others. Nothing here reads a clock or a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

ALGORITHMS = ("EdDSA", "ES256", "RS256")


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


class KeyringError(ValueError):
    """The keyring cannot do what was asked; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class Policy:
    jwks_cache_ttl: float = 300.0
    """How long verifiers may cache the JWKS: a new key is published this long before it signs."""
    max_token_lifetime: float = 3600.0
    """The longest `exp - iat` the signer issues."""
    clock_skew: float = 60.0
    """How far verifiers' clocks may be off (their leeway on `exp`)."""

    def __post_init__(self) -> None:
        for name in ("jwks_cache_ttl", "max_token_lifetime", "clock_skew"):
            if getattr(self, name) < 0:
                raise KeyringError(f"{name} cannot be negative")
        if self.max_token_lifetime <= 0:
            raise KeyringError("max_token_lifetime must be positive")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about one key. The private half never lives in this object."""

    kid: str
    alg: str
    published_at: float
    activates_at: float
    public_jwk: Mapping[str, Any] = field(default_factory=dict, compare=False)
    state: KeyState = KeyState.NEXT
    """Last computed state (kept for `list` and logs); `advance` recomputes it."""


@dataclass(frozen=True, slots=True)
class Keyring:
    policy: Policy = Policy()
    keys: tuple[KeyInfo, ...] = ()
    """Ordered by activates_at: each key's successor is the one after it."""


@dataclass(frozen=True, slots=True)
class KeyTimes:
    kid: str
    alg: str
    state: KeyState
    published_at: float
    activates_at: float
    deactivates_at: float | None  # when its successor starts signing (None: no successor yet)
    retires_at: float | None  # when it leaves the JWKS


@dataclass(frozen=True, slots=True)
class Transition:
    kid: str
    old: KeyState
    new: KeyState
    at: float  # when the rule says it happened (not when it was noticed)


def timeline(ring: Keyring, now: float) -> tuple[KeyTimes, ...]:
    """Each key's state at `now`, and the instants its state changes."""
    out: list[KeyTimes] = []
    p = ring.policy
    for i, key in enumerate(ring.keys):
        successor = ring.keys[i + 1] if i + 1 < len(ring.keys) else None
        deactivates_at = successor.activates_at if successor else None
        retires_at = (
            deactivates_at + p.max_token_lifetime + p.clock_skew
            if deactivates_at is not None
            else None
        )
        if now < key.activates_at:
            state = KeyState.NEXT
        elif deactivates_at is None or now < deactivates_at:
            state = KeyState.ACTIVE
        elif retires_at is not None and now < retires_at:
            state = KeyState.RETIRING
        else:
            state = KeyState.RETIRED
        out.append(
            KeyTimes(
                key.kid,
                key.alg,
                state,
                key.published_at,
                key.activates_at,
                deactivates_at,
                retires_at,
            )
        )
    return tuple(out)


def advance(ring: Keyring, now: float) -> tuple[Keyring, tuple[Transition, ...]]:
    """The ring with every key's state brought to `now`, and the transitions that implies."""
    times = {t.kid: t for t in timeline(ring, now)}
    keys: list[KeyInfo] = []
    moves: list[Transition] = []
    for key in ring.keys:
        t = times[key.kid]
        if t.state != key.state:
            at = {
                KeyState.NEXT: key.published_at,
                KeyState.ACTIVE: key.activates_at,
                KeyState.RETIRING: t.deactivates_at,
                KeyState.RETIRED: t.retires_at,
            }[t.state]
            moves.append(Transition(key.kid, key.state, t.state, at if at is not None else now))
            key = replace(key, state=t.state)
        keys.append(key)
    return replace(ring, keys=tuple(keys)), tuple(moves)


def active_key(ring: Keyring, now: float) -> KeyInfo:
    for key, t in zip(ring.keys, timeline(ring, now), strict=True):
        if t.state is KeyState.ACTIVE:
            return key
    raise KeyringError("the keyring has no active key; run `zerodown keys init` first")


def published_keys(ring: Keyring, now: float) -> tuple[KeyInfo, ...]:
    """What the JWKS shows: next, active and retiring keys."""
    return tuple(
        key
        for key, t in zip(ring.keys, timeline(ring, now), strict=True)
        if t.state is not KeyState.RETIRED
    )


def initial(
    policy: Policy, *, kid: str, alg: str, public_jwk: Mapping[str, Any], now: float
) -> Keyring:
    """A new ring whose first key signs at once: no verifier can hold an older JWKS yet."""
    _check_alg(alg)
    first = KeyInfo(kid, alg, published_at=now, activates_at=now, public_jwk=public_jwk)
    return advance(Keyring(policy=policy, keys=(first,)), now)[0]


def rotate(
    ring: Keyring, *, kid: str, alg: str, public_jwk: Mapping[str, Any], now: float
) -> Keyring:
    """Add the next key: published now, signing once every verifier's cache has expired."""
    _check_alg(alg)
    if not ring.keys:
        raise KeyringError("the keyring is empty; run `zerodown keys init` first")
    if any(k.kid == kid for k in ring.keys):
        raise KeyringError(f"key id {kid} is already in the keyring")
    for t in timeline(ring, now):
        if t.state is KeyState.NEXT:
            raise KeyringError(
                f"key {t.kid} is already waiting to sign (from {utc(t.activates_at)}); "
                "rotate again after it is active"
            )
    activates_at = max(now + ring.policy.jwks_cache_ttl, ring.keys[-1].activates_at)
    new = KeyInfo(kid, alg, published_at=now, activates_at=activates_at, public_jwk=public_jwk)
    return advance(replace(ring, keys=(*ring.keys, new)), now)[0]


def utc(t: float) -> str:
    """A timestamp for people: 2026-11-27 10:05:00Z."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _check_alg(alg: str) -> None:
    if alg not in ALGORITHMS:
        raise KeyringError(
            f"algorithm {alg!r} is not supported; use one of {', '.join(ALGORITHMS)}"
        )
