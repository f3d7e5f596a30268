"""Window statistics over router samples."""

from __future__ import annotations

import pytest

from zerodown.core.analysis.stats import (
    bucket_error_rates,
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
