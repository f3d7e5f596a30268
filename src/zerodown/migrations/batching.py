"""How big the next backfill batch is and how long the backfill rests after it.

Control law, after each batch (measured from its first statement to its commit):

- **Size.** A batch holds the row locks of every row it touches until it commits, so its
  duration is the longest a writer of one of those rows can be made to wait. The next batch is
  sized to hold them `target` seconds at the rate just measured, grows at most twofold per batch
  (so one fast batch on a cold cache does not jump to a size that then takes seconds), and
  halves as soon as a workload statement was seen waiting on the backfill's locks, or the batch
  itself had to wait for a lock.
- **Pause (duty cycle).** Locks are not all a backfill costs the workload: each batch also
  takes a CPU and writes WAL that the workload's next commit has to flush with its own. So the
  backfill works only a share `duty` of the time: a batch of `seconds` is followed by a pause of
  seconds * (1/duty - 1) (a 100 ms batch at duty 0.5 rests 100 ms), never less than `least`.
- **Throttle (AIMD on the duty).** The duty halves, down to `duty_min`, after a batch that
  blocked anyone (above) or at whose end a workload statement was seen in flight and waiting
  (a lock, the WAL, I/O) for longer than `target` — a statement slowed past the time the
  backfill allows itself to hold a lock; it then grows back by `step` per calm batch up to
  `duty_max`. So the backfill slows down within one batch when it hurts, and speeds up again
  over ten or so batches when it no longer does (gh-ost throttles on load in the same spirit;
  pgroll uses fixed batches and a fixed delay).

- **Share of the keys (optional).** A workload write to a key inside the running batch's range
  waits for its commit, so the chance a write waits grows with the share of the table's keys a
  batch spans, not with its duration alone: `batch_share` caps a batch at that share of the
  table's estimated rows (a 25,000-row batch spans 1/8 of a 200,000-row table, 1/40 of a
  1,000,000-row one).

A fixed size (pgroll's 1,000 rows, zerodown's old default) is either too small for a narrow
table, paying a commit per thousand rows, or too large for a wide one with hot rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    rows: int  # rows the batch touched
    seconds: float  # from its first statement to its commit
    blocked: bool  # a workload statement waited on the batch's locks, or the batch on theirs
    slowed: bool = False  # a workload statement was seen waiting longer than the target


def next_batch_size(size: int, outcome: BatchOutcome, *, target: float, lo: int, hi: int) -> int:
    """The size of the batch after one that ran `outcome` with `size` rows."""
    if outcome.blocked:
        wanted = size // 2
    elif outcome.rows < size or outcome.seconds <= 0:
        wanted = size  # the last, short batch says nothing about the rate
    else:
        wanted = int(size * min(2.0, target / outcome.seconds))
    return max(lo, min(hi, wanted))


def next_duty(duty: float, outcome: BatchOutcome, *, lo: float, hi: float, step: float) -> float:
    """The backfill's share of the time after a batch: halved when it hurt, else a step up."""
    if outcome.blocked or outcome.slowed:
        return max(lo, duty / 2)
    return min(hi, duty + step)


def pause_after(outcome: BatchOutcome, *, duty: float, least: float) -> float:
    """The pause after a batch, so that the backfill works `duty` of the time: a batch of
    `seconds` is followed by seconds * (1/duty - 1), and never less than `least`."""
    if duty >= 1.0:
        return least
    return max(least, outcome.seconds * (1.0 / max(duty, 0.01) - 1.0))


def size_cap(estimated_rows: float, *, share: float | None, lo: int, hi: int) -> int:
    """The largest batch: `hi`, or `share` of the table's estimated rows when given (never
    below `lo`; an unknown estimate, -1 before the first ANALYZE, leaves `hi`)."""
    if share is None or estimated_rows <= 0:
        return hi
    return max(lo, min(hi, int(estimated_rows * share)))
