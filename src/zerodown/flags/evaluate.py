"""Evaluate a flag for a context, exactly as Unleash's clients do. Pure: no I/O.

Bucketing (from Unleash's client specification and its clients' source, facts not code):
- a gradual rollout is on when `murmur3_32("{groupId}:{stickyValue}", seed=0) % 100 + 1 <= rollout`;
- a variant is picked with `murmur3_32("{groupId}:{stickyValue}", seed=86028157) % total_weight + 1`
  walking the variants in order and summing their weights;
- the group id of a rollout defaults to the flag key, that of feature variants is the flag key, and
  that of strategy variants is the strategy's group id.
The vectors of `@unleash/client-specification` hold us to it (tests/unit/flags/test_unleash_spec.py)
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

import mmh3
import semver

from zerodown.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    GradualRolloutStrategy,
    NeverStrategy,
    Operator,
    Payload,
    RemoteAddressStrategy,
    UserIdsStrategy,
    Variant,
)

STRATEGY_SEED = 0
VARIANT_SEED = 86028157
DISABLED_VARIANT = "disabled"

Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class EvalContext:
    """Who is asking. Field names in constraints and stickiness use Unleash's spelling
    (userId, sessionId, remoteAddress, environment, appName, currentTime); any other name is
    looked up in `properties`."""

    user_id: str | None = None
    session_id: str | None = None
    remote_address: str | None = None
    environment: str | None = None
    app_name: str | None = None
    current_time: datetime | None = None
    properties: Mapping[str, object] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        if name == "userId":
            return self.user_id
        if name == "sessionId":
            return self.session_id
        if name == "remoteAddress":
            return self.remote_address
        if name == "environment":
            return self.environment
        if name == "appName":
            return self.app_name
        if name == "currentTime":
            return self.current_time.isoformat() if self.current_time else None
        value = self.properties.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> EvalContext:
        """From Unleash-style or OpenFeature-style JSON: `targetingKey` counts as userId; unknown
        top-level keys and a nested `properties` object both become properties."""
        props: dict[str, object] = {}
        nested = data.get("properties")
        if isinstance(nested, Mapping):
            props.update(nested)
        known = {"userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime"}
        for k, v in data.items():
            if k not in known and k not in ("properties", "targetingKey"):
                props[k] = v
        user_id = data.get("userId", data.get("targetingKey"))
        current = data.get("currentTime")
        return cls(
            user_id=_str_or_none(user_id),
            session_id=_str_or_none(data.get("sessionId")),
            remote_address=_str_or_none(data.get("remoteAddress")),
            environment=_str_or_none(data.get("environment")),
            app_name=_str_or_none(data.get("appName")),
            current_time=_parse_date(current) if isinstance(current, str) else None,
            properties=props,
        )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


class Reason(StrEnum):
    """Why a result came out; named as OpenFeature's reasons so OFREP can pass them through."""

    DISABLED = "DISABLED"  # the flag is off
    DEFAULT = "DEFAULT"  # on, but no strategy matched this context (or a dependency failed)
    TARGETING_MATCH = "TARGETING_MATCH"  # a strategy matched
    SPLIT = "SPLIT"  # a strategy matched and a variant was picked by weight
    STATIC = "STATIC"  # on with no strategies: on for everyone


@dataclass(frozen=True, slots=True)
class Evaluation:
    key: str
    enabled: bool
    variant: str = DISABLED_VARIANT
    variant_enabled: bool = False
    payload: Payload | None = None
    reason: Reason = Reason.DISABLED


def evaluate(
    flag: Flag,
    ctx: EvalContext,
    *,
    flags: Mapping[str, Flag] | None = None,
    now: datetime | None = None,
    rand: Random = random.random,
) -> Evaluation:
    """Evaluate `flag` for `ctx`. `flags` (all definitions by key) resolves dependencies; `now`
    stands in for a missing currentTime in date constraints; `rand` drives random stickiness."""
    if not flag.enabled:
        return Evaluation(flag.key, False)
    if flag.dependencies and not _dependencies_hold(flag, ctx, flags or {}, now, rand):
        return Evaluation(flag.key, False, reason=Reason.DEFAULT)
    if not flag.strategies:
        return _with_variant(flag, None, ctx, rand, Reason.STATIC)
    for strategy in flag.strategies:
        if _strategy_on(flag, strategy, ctx, now, rand):
            return _with_variant(flag, strategy, ctx, rand, Reason.TARGETING_MATCH)
    return Evaluation(flag.key, False, reason=Reason.DEFAULT)


def is_enabled(flag: Flag | None, ctx: EvalContext, **kw: object) -> bool:
    return flag is not None and evaluate(flag, ctx, **kw).enabled  # type: ignore[arg-type]


def normalized_value(sticky: str, group_id: str, *, modulus: int = 100, seed: int = 0) -> int:
    """Unleash's bucket: 1..modulus."""
    return mmh3.hash(f"{group_id}:{sticky}", seed, signed=False) % modulus + 1


AnyStrategy = (
    DefaultStrategy
    | UserIdsStrategy
    | GradualRolloutStrategy
    | RemoteAddressStrategy
    | NeverStrategy
)


def _strategy_on(
    flag: Flag, s: AnyStrategy, ctx: EvalContext, now: datetime | None, rand: Random
) -> bool:
    for c in s.constraints:
        if not constraint_holds(c, ctx, now):
            return False
    if isinstance(s, DefaultStrategy):
        return True
    if isinstance(s, GradualRolloutStrategy):
        if s.rollout <= 0:
            return False
        sticky = _rollout_sticky_value(s.stickiness, ctx, rand)
        if sticky is None:
            return False
        return normalized_value(sticky, s.group_id or flag.key) <= s.rollout
    if isinstance(s, UserIdsStrategy):
        return ctx.user_id is not None and ctx.user_id in s.user_ids
    if isinstance(s, RemoteAddressStrategy):
        return ctx.remote_address is not None and _in_networks(ctx.remote_address, s.addresses)
    return False  # NeverStrategy


def _random_id(rand: Random) -> str:
    # Unleash's clients hash a random number in 1..10001 as the sticky value.
    return str(int(rand() * 10000) + 1)


def _rollout_sticky_value(stickiness: str, ctx: EvalContext, rand: Random) -> str | None:
    if stickiness == "default":
        return ctx.user_id or ctx.session_id or _random_id(rand)
    if stickiness == "random":
        return _random_id(rand)
    return ctx.get(stickiness)


def _variant_sticky_value(stickiness: str, ctx: EvalContext, rand: Random) -> str:
    if stickiness == "default":
        return ctx.user_id or ctx.session_id or ctx.remote_address or _random_id(rand)
    if stickiness == "random":
        return _random_id(rand)
    return ctx.get(stickiness) or _random_id(rand)


def _with_variant(
    flag: Flag, strategy: AnyStrategy | None, ctx: EvalContext, rand: Random, reason: Reason
) -> Evaluation:
    if strategy is not None and strategy.variants:
        variants = strategy.variants
        group = getattr(strategy, "group_id", None) or flag.key
        fallback_stickiness = getattr(strategy, "stickiness", "default")
    elif flag.variants:
        variants, group, fallback_stickiness = flag.variants, flag.key, "default"
    else:
        return Evaluation(flag.key, True, reason=reason)
    chosen = select_variant(variants, group, ctx, rand, fallback_stickiness=fallback_stickiness)
    if chosen is None:
        return Evaluation(flag.key, True, reason=reason)
    return Evaluation(flag.key, True, chosen.name, True, chosen.payload, Reason.SPLIT)


def select_variant(
    variants: tuple[Variant, ...],
    group_id: str,
    ctx: EvalContext,
    rand: Random = random.random,
    *,
    fallback_stickiness: str = "default",
) -> Variant | None:
    total = 0
    for v in variants:
        total += v.weight
    if total <= 0:
        return None
    for v in variants:
        for o in v.overrides:
            value = ctx.get(o.context_name)
            if value is not None and value in o.values:
                return v
    stickiness = variants[0].stickiness
    if stickiness == "default":
        stickiness = fallback_stickiness
    target = normalized_value(
        _variant_sticky_value(stickiness, ctx, rand), group_id, modulus=total, seed=VARIANT_SEED
    )
    counter = 0
    for v in variants:
        if v.weight == 0:
            continue
        counter += v.weight
        if counter >= target:
            return v
    return None  # unreachable: target <= total


def _dependencies_hold(
    flag: Flag, ctx: EvalContext, flags: Mapping[str, Flag], now: datetime | None, rand: Random
) -> bool:
    for dep in flag.dependencies:
        parent = flags.get(dep.feature)
        # One level only, as in Unleash: a parent with dependencies of its own does not count.
        if parent is None or parent.dependencies:
            return False
        result = evaluate(parent, ctx, flags=flags, now=now, rand=rand)
        if not dep.enabled:
            if result.enabled:
                return False
            continue
        if not result.enabled:
            return False
        if dep.variants and result.variant not in dep.variants:
            return False
    return True


# --- constraints ----------------------------------------------------------------------------


def constraint_holds(c: Constraint, ctx: EvalContext, now: datetime | None = None) -> bool:
    result = _constraint_result(c, ctx, now)
    return not result if c.inverted else result


def _constraint_result(c: Constraint, ctx: EvalContext, now: datetime | None) -> bool:
    op = c.operator
    if op is Operator.DATE_AFTER or op is Operator.DATE_BEFORE:
        return _date_holds(c, ctx, now)
    value = ctx.get(c.context_name)
    if op is Operator.IN:
        return value is not None and value in c.values
    if op is Operator.NOT_IN:
        return value is None or value not in c.values
    if value is None:
        return False
    if (
        op is Operator.STR_CONTAINS
        or op is Operator.STR_STARTS_WITH
        or op is Operator.STR_ENDS_WITH
    ):
        return _string_holds(op, value, c.values, c.case_insensitive)
    if op is Operator.IN_CIDR:
        return _in_networks(value, c.values)
    if op is Operator.REGEX:
        pattern = _compile_regex(c.value or "", c.case_insensitive)
        return pattern is not None and pattern.search(value) is not None
    if op.value.startswith("NUM_"):
        return _number_holds(op, value, c.value or "")
    return _semver_holds(op, value, c.value or "")


def _string_holds(op: Operator, value: str, values: tuple[str, ...], ci: bool) -> bool:
    if ci:
        value = value.lower()
        values = tuple(v.lower() for v in values)
    if op is Operator.STR_CONTAINS:
        return any(v in value for v in values)
    if op is Operator.STR_STARTS_WITH:
        return value.startswith(values)
    return value.endswith(values)


@lru_cache(maxsize=1024)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # Unleash skips entries that are not addresses
    return tuple(out)


def _in_networks(address: str, entries: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _networks(entries))


@lru_cache(maxsize=4096)
def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _number_holds(op: Operator, value: str, target: str) -> bool:
    a, b = _parse_number(value), _parse_number(target)
    if a is None or b is None:
        return False
    if op is Operator.NUM_EQ:
        return a == b
    if op is Operator.NUM_GT:
        return a > b
    if op is Operator.NUM_GTE:
        return a >= b
    if op is Operator.NUM_LT:
        return a < b
    return a <= b


@lru_cache(maxsize=4096)
def _parse_date(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date_holds(c: Constraint, ctx: EvalContext, now: datetime | None) -> bool:
    if c.context_name == "currentTime":
        current = ctx.current_time or now or datetime.now(UTC)
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
    else:
        raw = ctx.get(c.context_name)
        current = _parse_date(raw) if raw else None  # type: ignore[assignment]
    target = _parse_date(c.value or "")
    if current is None or target is None:
        return False
    return current > target if c.operator is Operator.DATE_AFTER else current < target


@lru_cache(maxsize=4096)
def _parse_semver(text: str) -> semver.Version | None:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


def _semver_holds(op: Operator, value: str, target: str) -> bool:
    a, b = _parse_semver(value), _parse_semver(target)
    if a is None or b is None:
        return False
    cmp = a.compare(b)
    if op is Operator.SEMVER_EQ:
        return cmp == 0
    if op is Operator.SEMVER_GT:
        return cmp > 0
    if op is Operator.SEMVER_GTE:
        return cmp >= 0
    if op is Operator.SEMVER_LT:
        return cmp < 0
    return cmp <= 0


# Unleash evaluates regexes with RE2. Python's `re` differs in a few spellings; translate those,
# and refuse what RE2 refuses (look-around, back-references) so a flag means the same here.
_POSIX_CLASSES = {
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r" \t\r\n\v\f",
    "[:word:]": r"\w",
    "[:xdigit:]": "0-9A-Fa-f",
    "[:punct:]": r"!-/:-@\[-`{-~",
}
_INLINE_FLAGS = re.compile(r"\(\?([ims]+)\)")
_RE2_UNSUPPORTED = re.compile(r"\(\?(?:=|!|<=|<!)|\\[1-9]")


@lru_cache(maxsize=1024)
def _compile_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str] | None:
    if _RE2_UNSUPPORTED.search(pattern):
        return None
    for posix, plain in _POSIX_CLASSES.items():
        pattern = pattern.replace(posix, plain)
    flags = re.ASCII if not case_insensitive else re.ASCII | re.IGNORECASE
    # RE2 allows `(?i)` anywhere; Python only at the start: hoist them.
    for group in _INLINE_FLAGS.findall(pattern):
        for letter in group:
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[letter]
    pattern = _INLINE_FLAGS.sub("", pattern)
    try:
        return re.compile(pattern, flags)
    except re.error:
        return None
