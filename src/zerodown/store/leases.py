"""The leader-lease rule both built-in stores apply inside their `claim` transaction.

Why a lease row with a deadline, not a session advisory lock (PostgreSQL's
pg_try_advisory_lock): an advisory lock lives as long as the session that took it, and a
leader that is paused (SIGSTOP, a VM frozen, a long GC) keeps its TCP connection and so its
lock, for ever; the standby would never take over, and the lock gives no token to fence the
old leader's late writes with. A row whose deadline is renewed by the leader runs out by the
store's clock whatever the leader is doing, its token grows at every change of holder, and
every write of the leader checks that token in its own transaction (see the stores' fence
check). It also works the same on SQLite, where there are no advisory locks.
"""

from __future__ import annotations

from zerodown.core.ports import Lease


def claimed(
    current: Lease | None, holder: str, *, now: float, ttl: float, dead: str | None
) -> Lease | None:
    """The lease after `holder` claims it at `now` (the store's clock); None if it may not.

    - its own lease is renewed, even just run out: no one took it, so its term goes on;
    - a free lease (none yet, or released), one that has run out, or one held by `dead` (a
      holder the caller knows is gone) starts a new term with a larger fencing token;
    - another holder's running lease is left alone.
    """
    if current is not None and current.holder == holder:
        return Lease(holder, current.token, current.since, now + ttl)
    free = current is None or not current.holder or current.expires_at <= now
    if free or (dead is not None and current is not None and current.holder == dead):
        token = (current.token if current is not None else 0) + 1
        return Lease(holder, token, now, now + ttl)
    return None
