"""The Mann-Whitney judge on synthetic samples whose answer is known; scipy as an oracle."""

from __future__ import annotations

import random

import pytest

from zerodown.core.analysis.judge import judge, mann_whitney, overall
from zerodown.core.analysis.model import Verdict


def test_textbook_example() -> None:
    # Every canary sample beats every baseline sample: U = n1 * n2, A = 1.
    result = mann_whitney([10, 11, 12, 13], [1, 2, 3])
    assert result.u == 12
    assert result.effect == 1.0
    assert result.p_greater < 0.05
    # and the other way round: U = 0, p near 1
    reverse = mann_whitney([1, 2, 3], [10, 11, 12, 13])
    assert reverse.u == 0 and reverse.p_greater > 0.95


def test_all_equal_samples_give_no_evidence() -> None:
    result = mann_whitney([1.0] * 10, [1.0] * 20)
    assert result.p_greater == 1.0
    assert result.effect == 0.5


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_scipy(seed: int) -> None:
    from scipy import stats  # a dev dependency: missing means a broken install, not a skip

    rng = random.Random(seed)
    shift = rng.choice([0.0, 0.1, 0.5, 1.0])
    # rounding makes ties, which the tie correction must handle like scipy
    canary = [round(rng.gauss(1 + shift, 1), 1) for _ in range(rng.randint(3, 80))]
    baseline = [round(rng.gauss(1, 1), 1) for _ in range(rng.randint(3, 200))]
    oracle = stats.mannwhitneyu(canary, baseline, alternative="greater", method="asymptotic")
    ours = mann_whitney(canary, baseline)
    assert ours.u == pytest.approx(oracle.statistic)
    assert ours.p_greater == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-12)


def _latencies(rng: random.Random, n: int, scale: float) -> list[float]:
    # log-normal, like real request latencies
    return [scale * rng.lognormvariate(-3.5, 0.4) for _ in range(n)]


def test_same_distribution_passes() -> None:
    rng = random.Random(7)
    result = judge(
        _latencies(rng, 300, 1.0),
        _latencies(rng, 3000, 1.0),
        confidence=0.95,
        allowed_effect=0.6,
    )
    assert result.verdict is Verdict.PASS
    assert result.test is not None and abs(result.test.effect - 0.5) < 0.06


def test_three_times_slower_fails() -> None:
    rng = random.Random(8)
    result = judge(
        _latencies(rng, 300, 3.0),
        _latencies(rng, 3000, 1.0),
        confidence=0.95,
        allowed_effect=0.6,
    )
    assert result.verdict is Verdict.FAIL
    assert result.test is not None and result.test.effect > 0.95
    assert "fail" in result.message


def test_small_shift_is_significant_but_within_allowed_effect() -> None:
    # 3% slower over many samples: statistically real, practically negligible
    rng = random.Random(9)
    canary = _latencies(rng, 5000, 1.03)
    baseline = _latencies(rng, 5000, 1.0)
    assert mann_whitney(canary, baseline).p_greater < 0.05
    assert judge(canary, baseline, confidence=0.95, allowed_effect=0.6).verdict is Verdict.PASS


def test_large_effect_on_few_samples_is_marginal() -> None:
    result = judge([2.0, 1.0, 3.0], [1.5, 0.5, 1.0], confidence=0.95, allowed_effect=0.6)
    assert result.verdict is Verdict.MARGINAL
    assert result.test is not None and result.test.effect > 0.6


def test_too_few_samples_never_pass() -> None:
    assert judge([1.0], [1.0, 2.0, 3.0], confidence=0.9, allowed_effect=0.6).verdict is (
        Verdict.MARGINAL
    )


def test_error_rates_per_interval() -> None:
    # 20% errors on the canary against 0.1% on the baseline, per 1-second interval
    rng = random.Random(3)
    canary = [sum(rng.random() < 0.2 for _ in range(15)) / 15 for _ in range(10)]
    baseline = [sum(rng.random() < 0.001 for _ in range(285)) / 285 for _ in range(10)]
    assert judge(canary, baseline, confidence=0.95, allowed_effect=0.6).verdict is Verdict.FAIL


def test_overall_score() -> None:
    assert overall([]) is None
    score = overall([Verdict.PASS, Verdict.PASS, Verdict.MARGINAL, Verdict.PASS])
    assert score is not None
    assert (score.verdict, score.score) == (Verdict.MARGINAL, 87.5)
    failing = overall([Verdict.PASS, Verdict.FAIL])
    assert failing is not None and failing.verdict is Verdict.FAIL and failing.score == 50
    passing = overall([Verdict.PASS])
    assert passing is not None and passing.verdict is Verdict.PASS and passing.score == 100
