"""Anytime-valid sequential judges: canary against baseline, request by request.

A fixed-interval rule ("error rate > 5% at any 1 s check") aborts good canaries by chance when it
is checked often, or waits longer than it needs when it is not. These judges are safe to watch
continuously: the probability that a canary as good as its baseline is *ever* failed, however long
and however often it is looked at, is at most `false_abort`. The ideas are those of Lindon, Sanden
and Shirikian ("Rapid Regression Detection in Software Deployments through Sequential Testing",
KDD 2022) and of the test-martingale literature they build on (Ville's inequality: a nonnegative
supermartingale that starts at 1 ever reaches 1/a with probability at most a); the construction
below is our own.

Both judges bet, one canary request at a time, against "the canary is no worse than the
baseline". The wealth of such a bet is a test supermartingale while that is true, so it reaches
2/false_abort with probability at most false_abort/2 (Ville). The rate the bet is measured
against depends on the baseline, which is unknown: it comes from a time-uniform confidence
bound on the baseline, which holds at every moment with probability 1 - false_abort/2. Together:
P(ever failing a canary as good as the baseline) <= false_abort, whatever the interleaving of
canary and baseline requests, and however the bound and the bet sizes were chosen, as long as
each bet is sized before the request it bets on is seen.

- `ErrorRateJudge`: requests are errors or not. Fail when the canary's error rate is shown to be
  above the baseline's plus `max_increase` (percentage points); pass when it is shown below it.
- `LatencyJudge`: a test of stochastic order ("canary slower"). For q in 0.5, 0.9, 0.99 a canary
  that is not slower exceeds the baseline's q-quantile with probability at most 1 - q; the judge
  bets on canary requests exceeding an upper confidence bound of that quantile, and fails when the
  average wealth of the three bets is large. Pass, with a `max_increase`, when at each of the three
  quantiles the canary is shown at most that much slower.

Pure: no I/O, no time. State is plain data (`to_json` / `from_json`) so a judge resumes after a
controller restart, and samples are consumed incrementally: each call adds only new requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# --- time-uniform confidence bounds ------------------------------------------------------------


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _bisect(f: Any, low: float, high: float, iterations: int = 60) -> float:
    """The point in [low, high] where the increasing-then-false predicate `f` flips."""
    for _ in range(iterations):
        mid = (low + high) / 2
        if f(mid):
            low = mid
        else:
            high = mid
    return (low + high) / 2


def bernoulli_confidence(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """A confidence sequence for a Bernoulli mean: the interval holds the true mean at every
    trial count at once with probability >= 1 - alpha.

    Robbins' method of mixtures with a Beta(1/2, 1/2) mixing distribution: for each candidate
    p0, M(p0) = B(1/2 + S, 1/2 + F) / B(1/2, 1/2) / (p0^S (1 - p0)^F) is the mixture of the
    likelihood ratios of every Bernoulli(theta) against Bernoulli(p0), a martingale with mean 1
    when p0 is the truth, so it ever exceeds 1/alpha with probability <= alpha. The interval is
    {p0 : M(p0) < 1/alpha}, which is convex because log M is convex in p0.
    """
    if trials == 0:
        return 0.0, 1.0
    failures = trials - successes
    level = _log_beta(0.5 + successes, 0.5 + failures) - _log_beta(0.5, 0.5) - math.log(1 / alpha)

    def inside(p: float) -> bool:
        # log p0^S (1-p0)^F above `level` <=> M(p0) below 1/alpha
        return successes * math.log(p) + failures * math.log1p(-p) > level

    centre = min(max(successes / trials, 1e-300), 1 - 1e-16)
    low = 0.0 if successes == 0 else _bisect(lambda p: not inside(p), 0.0, centre)
    high = 1.0 if failures == 0 else _bisect(inside, centre, 1.0)
    return low, high


_GRID = tuple(0.05 * 2 ** (k / 2) for k in range(16))
"""Log-odds shifts (0.05 to about 9) of the alternatives mixed in `count_bound`."""


def count_bound(trials: int, rate: float, alpha: float) -> int:
    """The largest count C such that a Bernoulli process with mean at most `rate` stays at or
    below C successes in `trials`, at every trial count at once, with probability >= 1 - alpha.

    A one-sided mixture (equal weights over alternatives theta whose log-odds exceed rate's by
    `_GRID`) of likelihood ratios theta vs rate: each is a supermartingale when the mean is at
    most rate, so is their average, which ever reaches 1/alpha with probability <= alpha. The
    mixture grows with the count, so the bound is the largest count that keeps it below 1/alpha.
    """
    if trials == 0 or rate >= 1:
        return trials
    if rate <= 0:
        return 0
    odds = rate / (1 - rate)
    terms: list[tuple[float, float]] = []
    for shift in _GRID:
        theta = odds * math.exp(shift) / (1 + odds * math.exp(shift))
        terms.append((math.log(theta / rate), math.log((1 - theta) / (1 - rate))))
    threshold = math.log(1 / alpha) + math.log(len(terms))

    def below(count: int) -> bool:
        exponents = [count * up + (trials - count) * down for up, down in terms]
        top = max(exponents)
        return top + math.log(sum(math.exp(e - top) for e in exponents)) < threshold

    low, high = 0, trials  # below(low) holds for low = floor(rate * trials) at least
    if below(high):
        return trials
    low = min(int(rate * trials), trials)
    if not below(low):
        low = 0
    while high - low > 1:
        mid = (low + high) // 2
        if below(mid):
            low = mid
        else:
            high = mid
    return low


# --- the bet -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Bet:
    """A one-sided bet on 0/1 outcomes against "their mean is at most (or, `down`, at least)
    rate", with the rate given afresh for each outcome.

    The stake is the likelihood ratio of a plug-in estimate (Krichevsky-Trofimov: (hits + 1/2) /
    (n + 1), from earlier outcomes only) against the rate, kept on the alternative's side, which
    is the bet 1 + lam * (x - rate) with lam = (est - rate) / (rate (1 - rate)) >= 0. Its expected
    factor is <= 1 whenever the mean is on the null's side, so the wealth is a test supermartingale
    (the `down` bet mirrors it). `log_wealth` is its logarithm.
    """

    down: bool = False
    n: int = 0
    hits: int = 0
    log_wealth: float = 0.0
    peak: float = 0.0  # the largest log-wealth so far (what decides: it never un-crosses)

    def add(self, outcome: bool, rate: float | None) -> None:
        """Bet on one outcome; `rate` None means there is nothing to bet against yet."""
        if rate is not None and 0.0 < rate < 1.0:
            estimate = (self.hits + 0.5) / (self.n + 1)
            estimate = min(max(estimate, 1e-12), 1 - 1e-12)
            if (estimate < rate) if self.down else (estimate > rate):
                p, q = (estimate, rate)
                factor = p / q if outcome else (1 - p) / (1 - q)
                self.log_wealth += math.log(factor)
                self.peak = max(self.peak, self.log_wealth)
        self.n += 1
        self.hits += outcome

    def to_json(self) -> list[float]:
        return [self.n, self.hits, self.log_wealth, self.peak]

    @classmethod
    def from_json(cls, data: Iterable[float], *, down: bool = False) -> Bet:
        n, hits, log_wealth, peak = data
        return cls(down=down, n=int(n), hits=int(hits), log_wealth=log_wealth, peak=peak)


# --- decisions ---------------------------------------------------------------------------------


class Decision(StrEnum):
    RUNNING = "running"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    message: str
    canary_requests: int  # at the decision (or so far, while running)
    baseline_requests: int
    evidence: float  # the failing side's e-value so far (reaches 2/false_abort to fail)


def _evalue(log_wealth: float) -> float:
    return math.exp(min(log_wealth, 700.0))


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%"


# --- error rate ---------------------------------------------------------------------------------


class ErrorRateJudge:
    """Canary error rate against baseline error rate plus `max_increase` (absolute)."""

    def __init__(self, *, false_abort: float, max_increase: float = 0.0) -> None:
        if not 0 < false_abort < 1:
            raise ValueError("false_abort is a probability between 0 and 1")
        self.alpha = false_abort
        self.max_increase = max_increase
        self.baseline_n = 0
        self.baseline_errors = 0
        self.fail_bet = Bet()
        self.pass_bet = Bet(down=True)
        self.decided: Decision = Decision.RUNNING
        self._bounds = (0.0, 1.0)

    @property
    def threshold(self) -> float:
        """Log-wealth that decides: half the error budget, the other half is the baseline's."""
        return math.log(2 / self.alpha)

    def add_baseline(self, requests: int, errors: int) -> None:
        self.baseline_n += requests
        self.baseline_errors += errors
        self._bounds = bernoulli_confidence(self.baseline_errors, self.baseline_n, self.alpha / 2)

    def add_canary(self, errors: Iterable[bool]) -> Outcome:
        """Bet on each canary request in order; stop at the first boundary crossed."""
        low, high = self._bounds
        fail_rate = high + self.max_increase if self.baseline_n else None
        pass_rate = low + self.max_increase if self.baseline_n else None
        for error in errors:
            if self.decided is not Decision.RUNNING:
                break
            self.fail_bet.add(error, fail_rate)
            self.pass_bet.add(error, pass_rate)
            if self.fail_bet.log_wealth >= self.threshold:
                self.decided = Decision.FAIL
            elif self.pass_bet.log_wealth >= self.threshold:
                self.decided = Decision.PASS
        return self.outcome()

    def outcome(self) -> Outcome:
        canary = self.fail_bet
        rate_c = canary.hits / canary.n if canary.n else 0.0
        rate_b = self.baseline_errors / self.baseline_n if self.baseline_n else 0.0
        facts = (
            f"canary {canary.hits}/{canary.n} errors ({_pct(rate_c)}), baseline "
            f"{self.baseline_errors}/{self.baseline_n} ({_pct(rate_b)})"
        )
        allowed = f"baseline + {_pct(self.max_increase)}" if self.max_increase else "baseline"
        confidence = f"{_pct(1 - self.alpha)} confidence"
        evidence = _evalue(canary.log_wealth)
        needed = 2 / self.alpha
        if self.decided is Decision.FAIL:
            text = f"error rate above {allowed} ({confidence}): {facts}"
        elif self.decided is Decision.PASS:
            text = f"error rate within {allowed} ({confidence}): {facts}"
        else:
            text = f"watching: {facts}; evidence {evidence:.3g} of {needed:g} to fail"
        return Outcome(self.decided, text, canary.n, self.baseline_n, evidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": [self.baseline_n, self.baseline_errors],
            "fail": self.fail_bet.to_json(),
            "pass": self.pass_bet.to_json(),
            "decided": self.decided.value,
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, false_abort: float, max_increase: float
    ) -> ErrorRateJudge:
        judge = cls(false_abort=false_abort, max_increase=max_increase)
        requests, errors = data["baseline"]
        judge.add_baseline(int(requests), int(errors))
        judge.fail_bet = Bet.from_json(data["fail"])
        judge.pass_bet = Bet.from_json(data["pass"], down=True)
        judge.decided = Decision(data["decided"])
        return judge


# --- latency: stochastic order ------------------------------------------------------------------

QUANTILES = (0.5, 0.9, 0.99)
"""Where the latency judge compares canary and baseline: median, p90, p99."""

BIN_RATIO = 1.02
"""Baseline latencies are kept in log-spaced bins 2% wide: bounded memory and state, and bounds
rounded outwards (so the test stays valid, a little conservative)."""
BIN_FLOOR = 1e-5  # seconds; faster requests share bin 0
BIN_COUNT = 1000  # up to about 4 hours; slower requests share the last bin
_LOG_RATIO = math.log(BIN_RATIO)


def latency_bin(seconds: float) -> int:
    if seconds < BIN_FLOOR:
        return 0
    return min(int(math.log(seconds / BIN_FLOOR) / _LOG_RATIO) + 1, BIN_COUNT - 1)


def bin_edges(index: int) -> tuple[float, float]:
    """[low, high) of a bin in seconds; bin 0 starts at 0, the last one has no end."""
    low = 0.0 if index == 0 else BIN_FLOOR * BIN_RATIO ** (index - 1)
    high = math.inf if index == BIN_COUNT - 1 else BIN_FLOOR * BIN_RATIO**index
    return low, high


class LatencyJudge:
    """Is the canary slower than the baseline (stochastic order), at the median, p90 and p99?"""

    def __init__(self, *, false_abort: float, max_increase: float | None = None) -> None:
        if not 0 < false_abort < 1:
            raise ValueError("false_abort is a probability between 0 and 1")
        self.alpha = false_abort
        self.max_increase = max_increase  # relative; None: never pass, only watch
        self.bins: dict[int, int] = {}
        self.baseline_n = 0
        self.fail_bets = [Bet() for _ in QUANTILES]
        self.pass_bets = [Bet(down=True) for _ in QUANTILES]
        self.decided: Decision = Decision.RUNNING
        self.upper: list[float | None] = [None] * len(QUANTILES)
        self.lower: list[float | None] = [None] * len(QUANTILES)

    @property
    def threshold(self) -> float:
        return math.log(2 / self.alpha)

    def add_baseline(self, latencies: Iterable[float]) -> None:
        counts: dict[int, int] = {}
        for seconds in latencies:
            index = latency_bin(seconds)
            counts[index] = counts.get(index, 0) + 1
        self.add_baseline_bins(counts)

    def add_baseline_bins(self, counts: Mapping[int, int]) -> None:
        """Baseline requests already binned (what the state stores; the simulation feeds this)."""
        for index, n in counts.items():
            if n:
                self.bins[index] = self.bins.get(index, 0) + n
                self.baseline_n += n
        self._refresh_bounds()

    def _refresh_bounds(self) -> None:
        """Confidence bounds on the baseline's quantiles, at every moment at once.

        Upper bound of the q-quantile x_q: fewer than F(x_q-) <= q of baseline requests lie
        below x_q, so their count stays <= count_bound(n, q) with probability 1 - a; then the
        (bound + 1)-th smallest request is at or above x_q. The lower bound mirrors it with the
        requests above x_q (mean <= 1 - q). Fail uses the upper bounds, each at level
        false_abort / 6 (three quantiles share the baseline's half of the budget); pass uses the
        lower ones at false_abort / 2 each (pass needs all three, an intersection-union test).
        """
        n = self.baseline_n
        ordered = sorted(self.bins.items())
        for i, q in enumerate(QUANTILES):
            below = count_bound(n, q, self.alpha / (2 * len(QUANTILES)))
            self.upper[i] = _order_statistic(ordered, below + 1, n, upper=True)
            above = count_bound(n, 1 - q, self.alpha / 2)
            self.lower[i] = _order_statistic(ordered, n - above, n, upper=False)

    def add_canary(self, latencies: Iterable[float]) -> Outcome:
        threshold = self.threshold
        allowed = 1 + (self.max_increase or 0.0)
        for seconds in latencies:
            if self.decided is not Decision.RUNNING:
                break
            for i, q in enumerate(QUANTILES):
                upper, lower = self.upper[i], self.lower[i]
                self.fail_bets[i].add(
                    upper is not None and seconds > upper, None if upper is None else 1 - q
                )
                if self.max_increase is not None:
                    self.pass_bets[i].add(
                        lower is not None and seconds > lower * allowed,
                        None if lower is None else 1 - q,
                    )
            if self._mean_log_wealth(self.fail_bets) >= threshold:
                self.decided = Decision.FAIL
            elif self.max_increase is not None and all(
                b.log_wealth >= threshold for b in self.pass_bets
            ):
                self.decided = Decision.PASS
        return self.outcome()

    @staticmethod
    def _mean_log_wealth(bets: list[Bet]) -> float:
        """log of the average wealth: an average of test supermartingales is one too."""
        top = max(b.log_wealth for b in bets)
        return top + math.log(sum(math.exp(b.log_wealth - top) for b in bets) / len(bets))

    def outcome(self) -> Outcome:
        canary_n = self.fail_bets[0].n
        shares = ", ".join(
            f"p{round(q * 100)} {b.hits}/{b.n}"
            for q, b in zip(QUANTILES, self.fail_bets, strict=True)
        )
        bounds = ", ".join(
            f"p{round(q * 100)} ≤ {_ms(u)}" for q, u in zip(QUANTILES, self.upper, strict=True)
        )
        facts = (
            f"canary requests above the baseline's bound ({bounds}): {shares}; "
            f"{self.baseline_n} baseline requests"
        )
        evidence = _evalue(self._mean_log_wealth(self.fail_bets))
        confidence = f"{_pct(1 - self.alpha)} confidence"
        if self.decided is Decision.FAIL:
            text = f"canary slower than baseline ({confidence}): {facts}"
        elif self.decided is Decision.PASS:
            text = (
                f"canary at most {_pct(self.max_increase or 0.0)} slower at p50/p90/p99 "
                f"({confidence}); {canary_n} canary, {self.baseline_n} baseline requests"
            )
        else:
            text = f"watching: {facts}; evidence {evidence:.3g} of {2 / self.alpha:g} to fail"
        return Outcome(self.decided, text, canary_n, self.baseline_n, evidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": {str(k): v for k, v in sorted(self.bins.items())},
            "fail": [b.to_json() for b in self.fail_bets],
            "pass": [b.to_json() for b in self.pass_bets],
            "decided": self.decided.value,
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, false_abort: float, max_increase: float | None
    ) -> LatencyJudge:
        judge = cls(false_abort=false_abort, max_increase=max_increase)
        judge.add_baseline_bins({int(k): int(v) for k, v in dict(data["bins"]).items()})
        judge.fail_bets = [Bet.from_json(b) for b in data["fail"]]
        judge.pass_bets = [Bet.from_json(b, down=True) for b in data["pass"]]
        judge.decided = Decision(data["decided"])
        return judge


def _order_statistic(
    ordered: list[tuple[int, int]], rank: int, n: int, *, upper: bool
) -> float | None:
    """An edge of the bin holding the rank-th smallest request (1-based): its upper edge (a value
    at or above it) or its lower edge (at or below it); None when rank is out of 1..n."""
    if rank < 1 or rank > n:
        return None
    seen = 0
    for index, count in ordered:
        seen += count
        if seen >= rank:
            low, high = bin_edges(index)
            return None if upper and math.isinf(high) else (high if upper else low)
    return None


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.3g}ms"
