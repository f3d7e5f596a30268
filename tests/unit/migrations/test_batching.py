"""The backfill's batch size: toward the target duration, at most twice as large, halved when
anyone waited on the batch; its pause: a duty cycle, halved when it hurt, regained by steps."""

from __future__ import annotations

import pytest

from zerodown.migrations.batching import (
    BatchOutcome,
    next_batch_size,
    next_duty,
    pause_after,
    size_cap,
)


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


CALM = BatchOutcome(rows=1000, seconds=0.1, blocked=False)


@pytest.mark.parametrize(
    ("duty", "outcome", "expected"),
    [
        (0.5, CALM, 0.55),  # calm: a step up
        (0.5, BatchOutcome(rows=1000, seconds=0.1, blocked=True), 0.25),  # someone waited
        (0.5, BatchOutcome(rows=1000, seconds=0.1, blocked=False, slowed=True), 0.25),  # slowed
        (0.15, BatchOutcome(rows=1000, seconds=0.1, blocked=True), 0.1),  # never below lo
        (0.58, CALM, 0.6),  # nor over hi
    ],
)
def test_next_duty(duty: float, outcome: BatchOutcome, expected: float) -> None:
    assert next_duty(duty, outcome, lo=0.1, hi=0.6, step=0.05) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("duty", "least", "expected"),
    [
        (0.5, 0.005, 0.1),  # works half the time: rests as long as the batch took
        (0.25, 0.005, 0.3),  # a quarter: three times as long
        (1.0, 0.005, 0.005),  # all the time: only the least pause
        (0.9, 0.05, 0.05),  # never less than the least pause
    ],
)
def test_pause_after(duty: float, least: float, expected: float) -> None:
    assert pause_after(CALM, duty=duty, least=least) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rows", "share", "expected"),
    [
        (200_000, 0.02, 4_000),  # a fiftieth of the keys
        (1_000_000, 0.02, 20_000),
        (100_000_000, 0.02, 100_000),  # never over hi
        (1_000, 0.02, 100),  # nor under lo
        (-1, 0.02, 100_000),  # never analyzed: no estimate, no cap
        (200_000, None, 100_000),  # not asked for
    ],
)
def test_size_cap(rows: float, share: float | None, expected: int) -> None:
    assert size_cap(rows, share=share, lo=100, hi=100_000) == expected
