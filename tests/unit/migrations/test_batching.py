"""The backfill's batch size: toward the target duration, at most twice as large, halved when
anyone waited on the batch."""

from __future__ import annotations

import pytest

from zerodown.migrations.batching import BatchOutcome, next_batch_size


@pytest.mark.parametrize(
    ("size", "outcome", "expected"),
    [
        (1000, BatchOutcome(rows=1000, seconds=0.01, blocked=False), 2000),  # fast: at most x2
        (1000, BatchOutcome(rows=1000, seconds=0.08, blocked=False), 1250),  # toward 0.1 s
        (8000, BatchOutcome(rows=8000, seconds=0.4, blocked=False), 2000),  # too slow: shrink
        (8000, BatchOutcome(rows=8000, seconds=0.01, blocked=True), 4000),  # someone waited
        (1000, BatchOutcome(rows=300, seconds=0.001, blocked=False), 1000),  # the short last one
        (150, BatchOutcome(rows=150, seconds=1.0, blocked=True), 100),  # never below lo
        (90_000, BatchOutcome(rows=90_000, seconds=0.01, blocked=False), 100_000),  # nor over hi
    ],
)
def test_next_batch_size(size: int, outcome: BatchOutcome, expected: int) -> None:
    assert next_batch_size(size, outcome, target=0.1, lo=100, hi=100_000) == expected
