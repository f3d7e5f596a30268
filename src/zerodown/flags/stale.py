"""Which flags have become technical debt. Pure: `now` is passed in.

A flag is stale when it is older than its type's expected lifetime (Unleash's table: release and
experiment 40 days, operational 7, kill-switch and permission never), when nobody evaluated it for
`unused_days`, or when it has sat fully on or fully off, unchanged, for `settled_days`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from zerodown.flags.model import DefaultStrategy, Flag, GradualRolloutStrategy


@dataclass(frozen=True, slots=True)
class StaleFlag:
    key: str
    type: str
    owner: str
    reasons: tuple[str, ...]


def stale_report(
    flags: Iterable[Flag],
    now: datetime,
    *,
    unused_days: int = 30,
    settled_days: int | None = 30,
) -> list[StaleFlag]:
    report = []
    for flag in sorted(flags, key=lambda f: f.key):
        reasons = stale_reasons(flag, now, unused_days=unused_days, settled_days=settled_days)
        if reasons:
            report.append(StaleFlag(flag.key, flag.type.value, flag.owner, reasons))
    return report


def stale_reasons(
    flag: Flag, now: datetime, *, unused_days: int = 30, settled_days: int | None = 30
) -> tuple[str, ...]:
    reasons = []
    lifetime = flag.type.expected_lifetime
    if lifetime is not None and flag.created_at is not None and now - flag.created_at > lifetime:
        age = (now - flag.created_at).days
        reasons.append(
            f"{age} days old; {flag.type.value} flags are expected to live {lifetime.days} days"
        )
    unused = timedelta(days=unused_days)
    if flag.last_evaluated_at is not None:
        if now - flag.last_evaluated_at > unused:
            days = (now - flag.last_evaluated_at).days
            reasons.append(f"not evaluated for {days} days")
    elif flag.created_at is not None and now - flag.created_at > unused:
        reasons.append(f"never evaluated in the {(now - flag.created_at).days} days since created")
    if settled_days is not None:
        since = flag.changed_at or flag.created_at
        if since is not None and now - since > timedelta(days=settled_days):
            state = settled_state(flag)
            if state:
                reasons.append(f"fully {state} and unchanged for {(now - since).days} days")
    return tuple(reasons)


def settled_state(flag: Flag) -> str | None:
    """ "on" when every context gets it, "off" when none does, None when it depends."""
    if not flag.enabled:
        return "off"
    if flag.dependencies:
        return None
    if not flag.strategies:
        return "on"
    for s in flag.strategies:
        if s.constraints:
            continue
        if isinstance(s, DefaultStrategy) or (
            isinstance(s, GradualRolloutStrategy) and s.rollout >= 100
        ):
            return "on"
    if all(isinstance(s, GradualRolloutStrategy) and s.rollout <= 0 for s in flag.strategies):
        return "off"
    return None
