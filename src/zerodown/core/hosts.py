"""Hosts as data: which host each instance runs on, which hosts answer, and where the next
instance of a release goes. Pure: the engine reports the hosts (`HostView`, from a platform with
hosts) and the strategies read them through the plan.

Rules (issue 14):
- instances of a release are spread evenly over the hosts that answer (`place`);
- a deploy never empties a host, and takes from each host at most `max_unavailable` of its share
  (`may_leave`), as well as overall (core/rolling.py);
- a host that has not answered for `grace` seconds has its instances replaced on the others, with
  the reason in the decision log (`lost`); it is placed on again once it answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zerodown.core.model import Instance


@dataclass(frozen=True, slots=True)
class HostView:
    name: str
    address: str  # where its instances listen
    up: bool = True
    down_since: float | None = None  # when the engine first saw it not answering
    reason: str = ""  # why it does not answer

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "up": self.up,
            "down_since": self.down_since,
            "reason": self.reason,
        }


def host_of(instance: Instance, hosts: Sequence[HostView]) -> str | None:
    """The name of the host `instance` listens on (None: not placed yet, or no hosts)."""
    address = instance.address.rpartition(":")[0].strip("[]")
    return next((h.name for h in hosts if h.address == address), None)


def usable(hosts: Sequence[HostView]) -> list[HostView]:
    return [h for h in hosts if h.up]


def lost(hosts: Sequence[HostView], now: float, grace: float) -> list[HostView]:
    """Hosts down for longer than `grace`: their instances are replaced elsewhere."""
    return [
        h for h in hosts if not h.up and h.down_since is not None and now - h.down_since >= grace
    ]


def shares(total: int, hosts: Sequence[HostView]) -> dict[str, int]:
    """`total` instances spread evenly over the usable hosts (the first ones take the rest)."""
    up = usable(hosts)
    if not up:
        return {}
    base, rest = divmod(total, len(up))
    return {h.name: base + (1 if index < rest else 0) for index, h in enumerate(up)}


def place(
    release: str,
    count: int,
    *,
    total: int,
    hosts: Sequence[HostView],
    live: Iterable[Instance],
    planned: Mapping[str, int] | None = None,
) -> list[str]:
    """Hosts for `count` new instances of `release`: each goes to the usable host furthest below
    its share of `total` (then the one with fewest instances of any release)."""
    up = usable(hosts)
    if not up:
        return []
    share = shares(total, hosts)
    mine = {h.name: 0 for h in up}
    every = {h.name: 0 for h in up}
    for instance in live:
        name = host_of(instance, hosts)
        if name in every:
            every[name] += 1
            if instance.release == release:
                mine[name] += 1
    for name, n in (planned or {}).items():
        if name in mine:
            mine[name] += n
            every[name] += n
    order = {h.name: index for index, h in enumerate(up)}
    chosen = []
    for _ in range(count):
        name = min(mine, key=lambda n: (mine[n] - share[n], every[n], order[n]))
        chosen.append(name)
        mine[name] += 1
        every[name] += 1
    return chosen


def floors(total: int, unavailable: int, hosts: Sequence[HostView]) -> dict[str, int]:
    """The fewest available instances each usable host keeps during a rollout: its share less
    max_unavailable, and never none while it has a share (a deploy never empties a host)."""
    return {
        name: max(1 if share > 0 else 0, share - unavailable)
        for name, share in shares(total, hosts).items()
    }
