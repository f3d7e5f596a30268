"""The sequential judges against their definitions, with fake request streams.

The bounds are checked against the mixture martingales they are defined by (computed here
independently), the bets against the supermartingale property (the expected next wealth under
the null, by enumerating the outcome), and the whole judges by a seeded Monte Carlo run: the
share of healthy canaries ever failed stays at or below `false_abort`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from zerodown.core.analysis.sequential import (
    QUANTILES,
    Bet,
    Decision,
    ErrorRateJudge,
    LatencyJudge,
    OddsBet,
    bin_edges,
    count_bound,
    latency_bin,
    rate_bounds,
)


@pytest.mark.parametrize(("successes", "trials"), [(0, 50), (3, 200), (40, 1000), (500, 500)])
def test_the_rate_bounds_are_where_the_mixtures_reach_one_over_alpha(
    successes: int, trials: int
) -> None:
    alpha = 0.01
    low, high = rate_bounds(successes, trials, alpha)
    assert 0 <= low <= successes / trials <= high <= 1
    # each bound is just outside its side of the sequence (0.2% further in is inside)
    if 0 < high < 1:
        assert grid_mixture(successes, trials, high, down=True) >= 1 / alpha
        assert grid_mixture(successes, trials, high / 1.002, down=True) < 1 / alpha
    if 0 < low < 1:
        assert grid_mixture(successes, trials, low) >= 1 / alpha
        assert grid_mixture(successes, trials, low * 1.002) < 1 / alpha


def grid_mixture(count: int, trials: int, rate: float, *, down: bool = False) -> float:
    """The one-sided mixture by its definition: the average likelihood ratio over 16
    alternatives whose log-odds differ from the rate's by 0.05 * 2^(k/2)."""
    odds = rate / (1 - rate)
    total = 0.0
    for k in range(16):
        shifted = odds * math.exp((-1 if down else 1) * 0.05 * 2 ** (k / 2))
        theta = shifted / (1 + shifted)
        ratio = (theta / rate) ** count * ((1 - theta) / (1 - rate)) ** (trials - count)
        total += ratio / 16
    return total


@pytest.mark.parametrize(("trials", "rate"), [(100, 0.5), (1000, 0.9), (5000, 0.01)])
def test_the_count_bound_is_the_last_count_below_one_over_alpha(trials: int, rate: float) -> None:
    alpha = 0.01
    bound = count_bound(trials, rate, alpha)
    assert rate * trials <= bound < trials
    assert grid_mixture(bound, trials, rate) < 1 / alpha <= grid_mixture(bound + 1, trials, rate)


@pytest.mark.parametrize("down", [False, True])
def test_a_bet_is_a_supermartingale_whenever_the_mean_is_on_the_nulls_side(down: bool) -> None:
    """E[next wealth | past] <= wealth, by enumerating the next outcome, from random pasts."""
    rng = random.Random(7)
    rate = 0.1
    for _ in range(100):
        bet = Bet(down=down)
        bet.at(rng.uniform(0.02, 0.3))
        for _ in range(rng.randrange(0, 40)):
            bet.add(rng.random() < 0.15)
        bet.flush()
        start = math.exp(bet.log_wealth)
        for mean in (rate, 0.5, 0.99) if down else (rate, rate * 0.5, 0.0):
            after = []
            for outcome in (True, False):
                trial = Bet.from_json(bet.to_json(), down=down)
                trial.at(rate)
                trial.add(outcome)
                trial.flush()
                after.append(math.exp(trial.log_wealth))
            expected = mean * after[0] + (1 - mean) * after[1]
            assert expected <= start * (1 + 1e-12)


def test_a_bet_without_a_rate_stakes_nothing_but_learns() -> None:
    bet = Bet()
    bet.at(None)
    bet.add(True)
    assert (bet.n, bet.hits, bet.log_wealth) == (1, 1, 0.0)


def test_pending_misses_are_the_same_as_misses_one_by_one() -> None:
    batched, single = Bet(), Bet()
    batched.at(0.05)
    for outcome in [False] * 30 + [True] + [False] * 10:
        batched.add(outcome)
        single.at(0.05)
        single.add(outcome)
        single.flush()
    batched.flush()
    assert batched.logs == pytest.approx(single.logs)
    assert batched.peak == pytest.approx(single.peak)


def stream_errors(
    judge: ErrorRateJudge,
    rng: random.Random,
    *,
    canary: float,
    baseline: float,
    looks: int,
    per_look: tuple[int, int],
) -> Decision:
    for _ in range(looks):
        n_b, n_c = per_look
        outcome = judge.add_look(
            [rng.random() < canary for _ in range(n_c)],
            n_b,
            sum(rng.random() < baseline for _ in range(n_b)),
        )
        if outcome.decision is not Decision.RUNNING:
            return outcome.decision
    return Decision.RUNNING


def noncentral(n_c: int, n_b: int, total: int, ratio: float) -> dict[int, float]:
    """Fisher's noncentral hypergeometric distribution, by its definition."""
    weights = {
        k: math.comb(n_c, k) * math.comb(n_b, total - k) * ratio**k
        for k in range(max(0, total - n_b), min(n_c, total) + 1)
    }
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


@pytest.mark.parametrize("margins", [(15, 285, 3), (5, 5, 4), (40, 60, 12), (15, 285, 0)])
@pytest.mark.parametrize("near", [None, 0.3, 2.0])
def test_the_odds_bet_is_a_supermartingale_at_and_below_its_null(
    margins: tuple[int, int, int], near: float | None
) -> None:
    """E[next wealth] <= wealth by enumerating the look's canary share, for the pure mixture
    (no boundary) and for the bet scaled down near a boundary (`near` nats above the wealth)."""
    n_c, n_b, total = margins
    start = OddsBet()
    start.add((10, 3), (100, 2), 1.5)  # some history
    boundary = None if near is None else start.log_wealth + near
    for true_ratio in (1.5, 1.0, 0.3):
        expected = 0.0
        for k, p in noncentral(n_c, n_b, total, true_ratio).items():
            bet = OddsBet.from_json(start.to_json())
            bet.add((n_c, k), (n_b, total - k), 1.5, boundary=boundary)
            expected += p * math.exp(bet.log_wealth)
        assert expected <= math.exp(start.log_wealth) * (1 + 1e-9)
    # and it grows, on average, when the canary's odds are much higher
    grown = 0.0
    for k, p in noncentral(n_c, n_b, total, 10.0).items():
        bet = OddsBet.from_json(start.to_json())
        bet.add((n_c, k), (n_b, total - k), 1.5, boundary=boundary)
        grown += p * bet.log_wealth
    assert grown >= start.log_wealth


def prior() -> list[tuple[float, float]]:
    """(odds ratio, weight) of the error judge's mixture, as docs/analysis.md states it: 90%
    evenly in log over 1.5x..10x (14 ratios), 5% on 1.05x..1.3x, 5% on 20x..10,000x."""
    core = [1.5 * (10 / 1.5) ** (i / 13) for i in range(14)]
    return (
        [(r, 0.05 / 4) for r in (1.05, 1.1, 1.2, 1.3)]
        + [(r, 0.9 / 14) for r in core]
        + [(r, 0.05 / 5) for r in (20, 50, 200, 1000, 1e4)]
    )


def test_the_odds_bet_is_the_prior_weighted_likelihood_ratio() -> None:
    """Without a boundary the wealth is, by definition, the prior-weighted average over odds
    ratios of the product of each look's noncentral hypergeometric likelihood ratio."""
    looks = [((15, 1), (285, 2)), ((15, 0), (285, 4)), ((15, 2), (285, 1)), ((5, 1), (5, 1))]
    bet = OddsBet()
    for canary, baseline in looks:
        bet.add(canary, baseline, 1.0)
    wealth = 0.0
    for ratio, weight in prior():
        product = 1.0
        for (n_c, k), (n_b, e_b) in looks:
            product *= noncentral(n_c, n_b, k + e_b, ratio)[k] / noncentral(n_c, n_b, k + e_b, 1)[k]
        wealth += weight * product
    assert bet.log_wealth == pytest.approx(math.log(wealth), rel=1e-9)


def test_the_odds_bet_lands_on_its_boundary_instead_of_past_it() -> None:
    start = OddsBet()
    for _ in range(3):
        start.add((15, 2), (285, 2), 1.0)
    boundary = start.log_wealth + 0.5
    hit, pure_hit = OddsBet.from_json(start.to_json()), OddsBet.from_json(start.to_json())
    hit.add((15, 1), (285, 2), 1.0, boundary=boundary)
    pure_hit.add((15, 1), (285, 2), 1.0)
    assert boundary <= hit.log_wealth <= boundary + 1e-6 < pure_hit.log_wealth
    miss, pure_miss = OddsBet.from_json(start.to_json()), OddsBet.from_json(start.to_json())
    miss.add((15, 0), (285, 3), 1.0, boundary=boundary)
    pure_miss.add((15, 0), (285, 3), 1.0)
    assert pure_miss.log_wealth < miss.log_wealth < start.log_wealth  # loses less, still loses


def test_the_odds_bet_never_fails_more_often_than_alpha_exactly() -> None:
    """The anytime false-abort probability by its definition: every path of 7 looks of a canary
    exactly as good as the baseline, weighted by its probability (Fisher's central
    hypergeometric law for each look's share), the ones that ever reach 1/alpha summed."""
    alpha = 0.2
    boundary = math.log(1 / alpha)
    margins = [(5, 5, 2), (15, 285, 3), (5, 5, 3), (4, 6, 2), (5, 5, 2), (3, 3, 2), (5, 5, 2)]

    def ever(bet: OddsBet, look: int) -> float:
        if bet.peak >= boundary:
            return 1.0
        if look == len(margins):
            return 0.0
        n_c, n_b, total = margins[look]
        chance = 0.0
        for k, p in noncentral(n_c, n_b, total, 1.0).items():
            after = OddsBet.from_json(bet.to_json())
            after.add((n_c, k), (n_b, total - k), 1.0, boundary=boundary)
            chance += p * ever(after, look + 1)
        return chance

    share = ever(OddsBet(), 0)
    assert 0.05 < share <= alpha  # near the budget: the boundary is reached without overshoot


def test_an_odds_bet_from_before_the_weighted_prior_goes_on_from_its_wealth() -> None:
    old = {"logs": [0.5] * 16, "peak": 0.7}
    bet = OddsBet.from_json(old)
    assert bet.log_wealth == pytest.approx(0.5) and bet.peak == 0.7
    assert OddsBet.from_json(bet.to_json()).to_json() == bet.to_json()


def test_a_canary_with_many_more_errors_fails_and_stays_failed() -> None:
    rng = random.Random(1)
    judge = ErrorRateJudge(false_abort=0.01, max_increase=0.01)
    decision = stream_errors(judge, rng, canary=0.2, baseline=0.01, looks=50, per_look=(95, 5))
    assert decision is Decision.FAIL
    seen = judge.canary_n
    assert seen < 200
    after = judge.add_look([False] * 1000, 100, 0)  # decided: later requests change nothing
    assert after.decision is Decision.FAIL and judge.canary_n == seen
    assert "error rate above baseline + 1%" in after.message


def test_a_canary_as_good_as_the_baseline_passes_within_the_tolerance() -> None:
    rng = random.Random(2)
    judge = ErrorRateJudge(false_abort=0.05, max_increase=0.05)
    decision = stream_errors(judge, rng, canary=0.01, baseline=0.01, looks=400, per_look=(50, 5))
    assert decision is Decision.PASS


@pytest.mark.parametrize("increase", [0.01, 0.0])
def test_the_error_judge_resumes_from_its_state_exactly(increase: float) -> None:
    looks = [([i % 7 == 0 for i in range(look, look + 15)], 285, look % 4) for look in range(20)]
    if not increase:  # the odds-ratio bet, scaled down near its boundary from look 15
        looks = [
            ([i % 37 == 0 for i in range(15 * look, 15 * look + 15)], 285, 1 + look % 3)
            for look in range(20)
        ]
    whole = ErrorRateJudge(false_abort=0.01, max_increase=increase)
    for look in looks:
        whole.add_look(*look)
    half = ErrorRateJudge(false_abort=0.01, max_increase=increase)
    for look in looks[:17]:
        half.add_look(*look)
    resumed = ErrorRateJudge.from_json(half.to_json(), false_abort=0.01, max_increase=increase)
    for look in looks[17:]:
        resumed.add_look(*look)
    assert resumed.to_json() == whole.to_json()


def false_abort_share(make, run, streams: int) -> float:  # type: ignore[no-untyped-def]
    failed = 0
    for seed in range(streams):
        judge = make()
        if run(judge, random.Random(seed)) is Decision.FAIL:
            failed += 1
    return failed / streams


def test_monte_carlo_error_judge_false_aborts_at_most_the_setting() -> None:
    """Canaries exactly at baseline + max_increase (the least favourable healthy canary),
    watched for 750 requests each (the bets against the baseline's
    bounds), looked at after every 5."""
    alpha = 0.1
    share = false_abort_share(
        lambda: ErrorRateJudge(false_abort=alpha, max_increase=0.02),
        lambda judge, rng: stream_errors(
            judge, rng, canary=0.07, baseline=0.05, looks=150, per_look=(20, 5)
        ),
        streams=60,
    )
    assert share <= alpha


def test_monte_carlo_error_judge_without_tolerance_false_aborts_at_most_the_setting() -> None:
    """The conditional (odds-ratio) test: canaries exactly as good as the baseline, 1,500
    requests each, whatever the baseline's rate does from look to look."""
    alpha = 0.1

    def drifting(judge: ErrorRateJudge, rng: random.Random) -> Decision:
        for look in range(100):
            rate = 0.02 if (look // 10) % 2 else 0.10  # the error rate changes over time
            outcome = judge.add_look(
                [rng.random() < rate for _ in range(15)],
                60,
                sum(rng.random() < rate for _ in range(60)),
            )
            if outcome.decision is not Decision.RUNNING:
                return outcome.decision
        return Decision.RUNNING

    share = false_abort_share(lambda: ErrorRateJudge(false_abort=alpha), drifting, streams=100)
    assert share <= alpha


def stream_latency(
    judge: LatencyJudge, rng: random.Random, *, slower: float, looks: int, per_look: tuple[int, int]
) -> Decision:
    for _ in range(looks):
        n_b, n_c = per_look
        judge.add_baseline([0.05 * math.exp(rng.gauss(0, 0.5)) for _ in range(n_b)])
        outcome = judge.add_canary(
            [slower * 0.05 * math.exp(rng.gauss(0, 0.5)) for _ in range(n_c)]
        )
        if outcome.decision is not Decision.RUNNING:
            return outcome.decision
    return Decision.RUNNING


def test_monte_carlo_latency_judge_false_aborts_at_most_the_setting() -> None:
    alpha = 0.1
    share = false_abort_share(
        lambda: LatencyJudge(false_abort=alpha),
        lambda judge, rng: stream_latency(judge, rng, slower=1.0, looks=40, per_look=(20, 10)),
        streams=40,
    )
    assert share <= alpha


def test_a_slower_canary_fails_the_latency_judge() -> None:
    judge = LatencyJudge(false_abort=0.01)
    decision = stream_latency(judge, random.Random(3), slower=1.5, looks=100, per_look=(50, 5))
    assert decision is Decision.FAIL
    assert judge.fail_bets[0].n < 500
    assert (
        "canary slower than baseline by more than max(5%, 1ms) (99% confidence)"
        in judge.outcome().message
    )


def test_a_canary_as_fast_as_the_baseline_passes_with_a_tolerance() -> None:
    judge = LatencyJudge(false_abort=0.05, max_increase=0.5)
    decision = stream_latency(judge, random.Random(4), slower=1.0, looks=300, per_look=(100, 20))
    assert decision is Decision.PASS


def test_the_latency_bounds_bracket_the_baselines_quantiles() -> None:
    judge = LatencyJudge(false_abort=0.01)
    rng = random.Random(5)
    values = sorted(rng.expovariate(10) for _ in range(5000))
    judge.add_baseline(values)
    for i, q in enumerate(QUANTILES):
        empirical = values[int(q * len(values))]
        lower, upper = judge.lower[i], judge.upper[i]
        assert lower is not None and upper is not None
        assert lower <= empirical <= upper
    restored = LatencyJudge.from_json(judge.to_json(), false_abort=0.01, max_increase=None)
    assert (restored.upper, restored.lower) == (judge.upper, judge.lower)


@pytest.mark.parametrize("seconds", [0.0, 1e-6, 0.001, 0.0421, 1.0, 30.0])
def test_a_latency_falls_in_its_bin(seconds: float) -> None:
    low, high = bin_edges(latency_bin(seconds))
    assert low <= seconds < high
    assert high <= max(low * 1.02 * (1 + 1e-12), 1e-5)


# --- the latency judge's tolerance and warm-up ----------------------------------------------------


def latency_stream(
    judge: LatencyJudge,
    rng: random.Random,
    *,
    canary: Callable[[float], float],
    looks: int,
    per_look: tuple[int, int] = (50, 10),
    median: float = 0.05,
) -> Decision:
    """Baseline latencies lognormal around `median`; each canary latency is `canary` of a draw
    from the same law (the identity: as good as the baseline)."""
    for _ in range(looks):
        n_b, n_c = per_look
        judge.add_baseline([median * math.exp(rng.gauss(0, 0.5)) for _ in range(n_b)])
        drawn = [median * math.exp(rng.gauss(0, 0.5)) for _ in range(n_c)]
        outcome = judge.add_canary([canary(x) for x in drawn])
        if outcome.decision is not Decision.RUNNING:
            return outcome.decision
    return Decision.RUNNING


def test_what_the_latency_judge_allows_is_the_larger_of_its_two_tolerances() -> None:
    judge = LatencyJudge(false_abort=0.01)  # the defaults: 5%, 1 ms
    assert (judge.tolerance, judge.floor, judge.warmup) == (0.05, 0.001, 100)
    assert judge.allowed(0.05) == pytest.approx(0.0525)  # 5% of 50 ms is more than 1 ms
    assert judge.allowed(0.0002) == pytest.approx(0.0012)  # 1 ms is more than 5% of 0.2 ms
    assert judge.allowed(0.02) == pytest.approx(0.021)  # where they meet
    explicit = LatencyJudge(false_abort=0.01, max_increase=0.25, floor=0.0)
    assert explicit.allowed(0.0002) == pytest.approx(0.00025)


@pytest.mark.parametrize(("max_increase", "slower"), [(None, 1.02), (0.1, 1.02), (0.1, 1.08)])
def test_a_canary_a_little_slower_is_not_failed_within_the_tolerance(
    max_increase: float | None, slower: float
) -> None:
    """12,000 canary requests 2 % slower under the default 5 % (it only watches), 2 % and 8 %
    under `max_increase: 10%` (it may pass): never failed."""
    judge = LatencyJudge(false_abort=0.01, max_increase=max_increase, floor=0.0, warmup=0)
    decision = latency_stream(
        judge, random.Random(11), canary=lambda x: x * slower, looks=600, per_look=(200, 20)
    )
    assert decision is not Decision.FAIL
    if max_increase is None:
        assert (decision, judge.fail_bets[0].n) == (Decision.RUNNING, 12_000)


def test_without_a_tolerance_a_small_real_difference_is_failed_in_the_end() -> None:
    """What the tolerance is for: the strict test fails a canary 8 % slower."""
    judge = LatencyJudge(false_abort=0.01, max_increase=0.0, floor=0.0, warmup=0)
    decision = latency_stream(
        judge, random.Random(11), canary=lambda x: x * 1.08, looks=600, per_look=(200, 20)
    )
    assert decision is Decision.FAIL


@pytest.mark.parametrize("max_increase", [None, 0.1])
def test_a_canary_thirty_percent_slower_still_fails_within_the_tolerance(
    max_increase: float | None,
) -> None:
    judge = LatencyJudge(false_abort=0.01, max_increase=max_increase)
    decision = latency_stream(judge, random.Random(12), canary=lambda x: x * 1.3, looks=300)
    assert decision is Decision.FAIL
    tolerated = "5%" if max_increase is None else "10%"
    assert f"by more than max({tolerated}, 1ms)" in judge.outcome().message


def test_a_canary_slower_by_less_than_the_floor_is_not_failed() -> None:
    """At 0.2 ms a canary 0.1 ms slower is 50 % slower, and still well under a millisecond."""

    def run(floor: float) -> Decision:
        judge = LatencyJudge(false_abort=0.01, floor=floor, warmup=0)
        return latency_stream(
            judge, random.Random(13), canary=lambda x: x + 0.0001, looks=300, median=0.0002
        )

    assert run(0.001) is Decision.RUNNING
    assert run(0.0) is Decision.FAIL


def test_monte_carlo_a_canary_exactly_as_slow_as_tolerated_is_failed_at_most_the_setting() -> None:
    """The hardest null: each canary quantile exactly (1 + max_increase) times the baseline's."""
    alpha = 0.1
    share = false_abort_share(
        lambda: LatencyJudge(false_abort=alpha, floor=0.0, warmup=0),  # 5%, watching only
        lambda judge, rng: latency_stream(judge, rng, canary=lambda x: x * 1.05, looks=40),
        streams=40,
    )
    assert share <= alpha


def test_the_canarys_first_requests_are_not_judged() -> None:
    """A canary 10x slower for its first 100 requests, then as good as the baseline."""

    def cold_start(warmup: int) -> LatencyJudge:
        judge = LatencyJudge(false_abort=0.01, warmup=warmup)
        rng = random.Random(14)
        judge.add_baseline([0.05 * math.exp(rng.gauss(0, 0.5)) for _ in range(2000)])
        judge.add_canary([0.5] * 100)
        latency_stream(judge, rng, canary=lambda x: x, looks=20)
        return judge

    assert cold_start(0).decided is Decision.FAIL
    warmed = cold_start(100)
    assert warmed.decided is Decision.RUNNING
    assert (warmed.warming, warmed.fail_bets[0].n) == (100, 200)  # 20 looks of 10 judged
    assert "the canary's first 100 not judged (warm-up)" in warmed.outcome().message


def test_the_warm_up_resumes_where_it_was_after_a_restart() -> None:
    judge = LatencyJudge(false_abort=0.01, warmup=100)
    judge.add_baseline([0.05] * 500)
    judge.add_canary([0.5] * 60)
    restored = LatencyJudge.from_json(judge.to_json(), false_abort=0.01, max_increase=None)
    restored.add_canary([0.5] * 40)  # the rest of the warm-up
    assert (restored.warming, restored.fail_bets[0].n) == (100, 0)
    restored.add_canary([0.05] * 5)
    assert restored.fail_bets[0].n == 5
    # a state saved before warm-ups existed was already judging every request
    old = {k: v for k, v in judge.to_json().items() if k != "warming"}
    resumed = LatencyJudge.from_json(old, false_abort=0.01, max_increase=None)
    resumed.add_canary([0.05])
    assert resumed.fail_bets[0].n == 1
