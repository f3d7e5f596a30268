"""Window statistics over router samples."""

from __future__ import annotations

import pytest

from zerodown.core.analysis.stats import (
    bucket_error_rates,
    counted_rate,
    judge_samples,
    quantile,
    window_stats,
)


def test_quantile_matches_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert quantile(values, 0.0) == 1.0
    assert quantile(values, 1.0) == 4.0
    assert quantile(values, 0.5) == 2.5
    assert quantile(values, 0.99) == pytest.approx(3.97)
    assert quantile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_quantile_agrees_with_numpy() -> None:
    import numpy as np  # a dev dependency: missing means a broken install, not a skip

    values = sorted(float(v) for v in np.random.default_rng(1).lognormal(size=501))
    for q in (0.5, 0.9, 0.99):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_window_stats() -> None:
    samples = [(10.0 + i * 0.1, 0.01 * (i + 1), 500 if i % 5 == 0 else 200) for i in range(20)]
    samples.append((9.0, 5.0, 200))  # before the window
    samples.append((12.5, 0.02, 0))  # no response: an error
    stats = window_stats(samples, 10.0, 12.5)
    assert stats.requests == 21
    assert stats.errors == 5
    assert stats.error_rate == pytest.approx(5 / 21)
    assert stats.request_rate == pytest.approx(21 / 2.5)
    assert stats.value("latency_p50") == pytest.approx(0.1)
    assert stats.value("latency_p99") == pytest.approx(0.2, abs=0.005)
    empty = window_stats([], 0, 1)
    assert (empty.value("error_rate"), empty.value("latency_p99"), empty.request_rate) == (
        0.0,
        None,
        0.0,
    )
    with pytest.raises(ValueError):
        empty.value("cpu")


def test_bucket_error_rates() -> None:
    samples = [(0.1, 0.01, 200), (0.5, 0.01, 503), (1.2, 0.01, 200), (3.9, 0.01, 500)]
    assert bucket_error_rates(samples, 0.0, 4.0) == [0.5, 0.0, 1.0]
    assert judge_samples(samples, "error_rate", 0.0, 4.0) == [0.5, 0.0, 1.0]
    assert judge_samples(samples, "latency_p90", 1.0, 4.0) == [0.01, 0.01]


def test_the_rate_comes_from_the_counter_reading_at_the_window_start() -> None:
    readings = [(100.0, 0), (110.0, 5_000), (120.0, 10_000)]
    # the window [110, 130]: from the reading at 110, 30,000 - 5,000 requests in 20 s
    assert counted_rate(readings, 110.0, (130.0, 30_000)) == pytest.approx(1_250.0)
    # a start between readings: the newest before it (the span is then a little longer)
    assert counted_rate(readings, 115.0, (130.0, 30_000)) == pytest.approx(1_250.0)


def test_no_rate_without_a_reading_that_old_or_after_the_counter_went_back() -> None:
    assert counted_rate([], 100.0, (130.0, 10)) is None
    assert counted_rate([(120.0, 5)], 110.0, (130.0, 10)) is None  # nothing before the start
    assert counted_rate([(100.0, 500)], 100.0, (130.0, 20)) is None  # a restarted router
    assert counted_rate([(100.0, 500), (110.0, 3)], 100.0, (130.0, 900)) is None  # reset between
    assert counted_rate([(130.0, 5)], 130.0, (130.0, 5)) is None  # no time has passed
    assert counted_rate([(50.0, 5)], 110.0, (130.0, 900)) is None  # older than a window before


def test_samples_alone_read_low_when_the_ring_cut_the_window() -> None:
    """Why the counters: 60 s at 1,000 req/s in a ring of the last 20,000 samples."""
    ring = [(40.0 + i / 1000, 0.01, 200) for i in range(20_000)]  # the last 20 s of 60
    assert window_stats(ring, 0.0, 60.0).request_rate == pytest.approx(333.3, rel=0.01)
    assert counted_rate([(0.0, 0)], 0.0, (60.0, 60_000)) == pytest.approx(1_000.0)
