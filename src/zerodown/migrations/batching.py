"""How many rows the next backfill batch takes: as many as fit in a short lock, fewer when
anyone had to wait for ours.

A batch holds the row locks of every row it touches until it commits, so its duration is the
longest a writer of one of those rows can be made to wait. The sizer aims each batch at
`target` seconds (the time a batch may hold its rows), grows at most twofold per batch (so one
fast batch on a cold cache does not jump to a size that then takes seconds), and halves as soon
as a workload statement was seen waiting on the backfill's locks, or the batch itself had to wait
for a lock. A fixed size (pgroll's 1,000 rows, zerodown's old default) is either too small for a
narrow table, paying a commit per thousand rows, or too large for a wide one with hot rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    rows: int  # rows the batch touched
    seconds: float  # from its first statement to its commit
    blocked: bool  # a workload statement waited on the batch's locks, or the batch on theirs


def next_batch_size(size: int, outcome: BatchOutcome, *, target: float, lo: int, hi: int) -> int:
    """The size of the batch after one that ran `outcome` with `size` rows."""
    if outcome.blocked:
        wanted = size // 2
    elif outcome.rows < size or outcome.seconds <= 0:
        wanted = size  # the last, short batch says nothing about the rate
    else:
        wanted = int(size * min(2.0, target / outcome.seconds))
    return max(lo, min(hi, wanted))


def pause_after(outcome: BatchOutcome, *, duty: float, least: float) -> float:
    """The pause after a batch, so that the backfill works `duty` of the time: a batch of
    `seconds` is followed by seconds × (1/duty − 1), and never less than `least`."""
    if duty >= 1.0:
        return least
    return max(least, outcome.seconds * (1.0 / max(duty, 0.01) - 1.0))
