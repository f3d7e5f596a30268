"""Anytime-valid sequential judges: canary against baseline, request by request.

A fixed-interval rule ("error rate > 5% at any 1 s check") aborts good canaries by chance when it
is checked often, or waits longer than it needs when it is not. These judges are safe to watch
continuously: the probability that a canary as good as its baseline is *ever* failed, however long
and however often it is looked at, is at most `false_abort`. The ideas are those of Lindon, Sanden
and Shirikian ("Rapid Regression Detection in Software Deployments through Sequential Testing",
KDD 2022) and of the test-martingale literature they build on (Ville's inequality: a nonnegative
supermartingale that starts at 1 ever reaches 1/a with probability at most a); the construction
below is our own.

Both judges bet against "the canary is no worse than the baseline". The wealth of such a bet is
a test supermartingale while that is true, so it ever reaches 1/a with probability at most a
(Ville). Where the bet needs a figure of the baseline's, that comes from a time-uniform
confidence bound on the baseline, which holds at every moment at once with probability 1 - b;
then P(ever failing a canary as good as the baseline) <= a + b = false_abort, whatever the
interleaving of canary and baseline requests, as long as each bet is sized before the outcome
it bets on is seen.

- `ErrorRateJudge`: requests are errors or not. Fail when the canary's error rate is shown to be
  above the baseline's plus `max_increase` (percentage points), look by look, by a conditional
  test of the odds ratio (Fisher's noncentral hypergeometric: no estimate of the baseline's rate
  needed without a tolerance); pass when it is shown below it.
- `LatencyJudge`: a test of stochastic order ("canary slower"). For q in 0.5, 0.9, 0.99 a canary
  that is not slower exceeds the baseline's q-quantile with probability at most 1 - q; the judge
  bets, request by request, on canary requests exceeding an upper confidence bound of that
  quantile, and fails when the average wealth of the three bets is large. Slower means beyond
  a tolerance (5 % or 1 ms by default, whichever is larger: two processes are never
  identical), and the canary's first requests are not judged (a warm-up). Pass, with a
  `max_increase`, when at each of the three quantiles the canary is shown at most that much
  slower.

Pure: no I/O, no time. State is plain data (`to_json` / `from_json`) so a judge resumes after a
controller restart, and samples are consumed incrementally: each call adds only new requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# --- time-uniform confidence bounds ------------------------------------------------------------


def _mean_exp(logs: list[float]) -> float:
    """log of the average of exp(logs)."""
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs) / len(logs))


_GRID = tuple(0.05 * 2 ** (k / 2) for k in range(16))
"""Log-odds shifts (0.05 to about 9) of the alternatives a mixture weighs equally: fine steps
near the null for long runs, coarse ones far from it for gross regressions."""


_EXP_UP = tuple(math.exp(shift) for shift in _GRID)
_EXP_DOWN = tuple(math.exp(-shift) for shift in _GRID)


def _alternatives(rate: float, *, down: bool) -> list[tuple[float, float]]:
    """(log(theta / rate), log((1 - theta) / (1 - rate))) for each alternative theta, whose odds
    are rate's times e^shift (e^-shift, `down`): with L = log(1 - rate + rate e^shift) these are
    (shift - L, -L)."""
    terms = []
    for shift, factor in zip(_GRID, _EXP_DOWN if down else _EXP_UP, strict=True):
        common = math.log1p(rate * (factor - 1))
        terms.append(((-shift if down else shift) - common, -common))
    return terms


def mixture_log(successes: int, trials: int, rate: float, *, down: bool = False) -> float:
    """log of the one-sided mixture martingale: the average over alternatives theta above rate
    (below it, `down`) of the likelihood ratio of `successes` in `trials` under theta vs rate.
    Each ratio is a supermartingale when the true mean is at most rate (at least, `down`), so
    their average ever reaches 1/alpha with probability at most alpha (Ville's inequality)."""
    failures = trials - successes
    return _mean_exp(
        [successes * up + failures * miss for up, miss in _alternatives(rate, down=down)]
    )


def _mixture_and_slope(successes: int, trials: int, rate: float, down: bool) -> tuple[float, float]:
    """`mixture_log` and its derivative in log(rate)."""
    exponents, slopes = [], []
    for shift, factor in zip(_GRID, _EXP_DOWN if down else _EXP_UP, strict=True):
        grow = rate * (factor - 1)
        common = math.log1p(grow)
        exponents.append(successes * (-shift if down else shift) - trials * common)
        slopes.append(-trials * grow / (1 + grow))
    top = max(exponents)
    weights = [math.exp(e - top) for e in exponents]
    total = sum(weights)
    value = top + math.log(total / len(weights))
    return value, sum(w * d for w, d in zip(weights, slopes, strict=True)) / total


def _solve(
    successes: int, trials: int, level: float, *, down: bool, start: float, low: float, high: float
) -> tuple[float, float]:
    """Two rates 0.1% apart around where `mixture_log` equals `level`, between low (on one side)
    and high (on the other): Newton's method on log(rate) from `start` (the last bound: bounds
    move little between looks), kept inside the bracket, bisecting when a step leaves it."""
    sign_low = _mixture_and_slope(successes, trials, low, down)[0] >= level
    u_low, u_high = math.log(low), math.log(high)
    u = min(max(math.log(max(start, low)), u_low), u_high)
    for _ in range(100):
        if u_high - u_low < 1e-3:
            break
        value, slope = _mixture_and_slope(successes, trials, math.exp(u), down)
        if (value >= level) == sign_low:
            u_low = u
        else:
            u_high = u
        step = u - (value - level) / slope if slope else math.inf
        # Newton lands just past the root, on purpose, to keep the bracket shrinking from both
        nudge = 5e-4 if (step > u) else -5e-4
        u = step + nudge if u_low < step + nudge < u_high else (u_low + u_high) / 2
    return math.exp(u_low), math.exp(u_high)


def rate_bounds(
    successes: int, trials: int, alpha: float, near: tuple[float, float] | None = None
) -> tuple[float, float]:
    """One-sided confidence sequences for a Bernoulli mean, each holding at every trial count at
    once with probability >= 1 - alpha: the upper bound is the largest p0 whose "mean >= p0"
    mixture stays below 1/alpha, the lower one the smallest p0 whose "mean <= p0" mixture does.
    Mixing over log-odds shifts keeps them tight for the small rates errors have. `near`: the
    last bounds, where the search starts. Each is returned on its conservative side."""
    if trials == 0:
        return 0.0, 1.0
    level = math.log(1 / alpha)
    centre = min(max(successes / trials, 1e-12), 1 - 1e-9)
    start_low, start_high = near if near is not None else (centre / 2, min(1.0, centre * 2))
    high = 1.0
    if successes < trials and _mixture_and_slope(successes, trials, 1 - 1e-9, True)[0] >= level:
        high = _solve(
            successes, trials, level, down=True, start=start_high, low=centre, high=1 - 1e-9
        )[1]
    low = 0.0
    if successes > 0 and _mixture_and_slope(successes, trials, 1e-12, False)[0] >= level:
        low = _solve(successes, trials, level, down=False, start=start_low, low=1e-12, high=centre)[
            0
        ]
    return low, high


def count_bound(trials: int, rate: float, alpha: float) -> int:
    """The largest count C such that a Bernoulli process with mean at most `rate` stays at or
    below C successes in `trials`, at every trial count at once, with probability >= 1 - alpha:
    the last count whose one-sided mixture (`mixture_log`) is still below 1/alpha.

    As a function of the count the mixture's log is a log-sum-exp of straight lines, convex and
    increasing, so Newton's method from a point above the root (where one line alone crosses)
    walks down to it in a few steps.
    """
    if trials == 0 or rate >= 1:
        return trials
    if rate <= 0:
        return 0
    level = math.log(1 / alpha) + math.log(len(_GRID))
    lines = [(trials * miss, up - miss) for up, miss in _alternatives(rate, down=False)]

    def f(count: float) -> tuple[float, float]:
        exponents = [a + b * count for a, b in lines]
        top = max(exponents)
        weights = [math.exp(e - top) for e in exponents]
        total = sum(weights)
        slope = sum(w * b for w, (_, b) in zip(weights, lines, strict=True)) / total
        return top + math.log(total) - level, slope

    count = min((level - a) / b for a, b in lines)
    for _ in range(50):
        value, slope = f(count)
        if value <= 1e-9:
            break
        count -= value / slope
    bound = max(0, min(trials, math.floor(count)))
    while bound > 0 and f(bound)[0] >= 0:  # rounding: the bound itself must stay below
        bound -= 1
    while bound < trials and f(bound + 1)[0] < 0:
        bound += 1
    return bound


# --- the bet -----------------------------------------------------------------------------------


class Bet:
    """A one-sided bet on 0/1 outcomes against "their mean is at most (or, `down`, at least)
    rate", with the rate set afresh before each batch of outcomes (`at`).

    The stake is spread over alternatives whose log-odds exceed the rate's by each of `_GRID`
    (below it, `down`): each component is the likelihood ratio of its alternative against the
    rate, i.e. the bet 1 + lam * (x - rate) with lam = (theta - rate) / (rate (1 - rate)) >= 0,
    whose expected factor is <= 1 whenever the mean is on the null's side. Each component's
    wealth is therefore a test supermartingale, and so is their average (`log_wealth`, in logs):
    a method of mixtures, which never loses more than log(len(_GRID)) against the best single
    alternative in hindsight.

    Outcomes that lower the wealth (misses, or hits when `down`... see `add`) are applied in a
    run, before the next outcome that may raise it, so a look costs O(1) per request and
    O(len(_GRID)) per hit. `peak` is the largest log-wealth seen: a boundary once crossed stays
    crossed (Ville's inequality bounds the chance of *ever* crossing).
    """

    __slots__ = ("_hit", "_miss", "_pending", "down", "hits", "log_wealth", "logs", "n", "peak")

    def __init__(
        self,
        *,
        down: bool = False,
        n: int = 0,
        hits: int = 0,
        logs: Iterable[float] | None = None,
        peak: float = 0.0,
    ) -> None:
        self.down = down
        self.n = n
        self.hits = hits
        self.logs = list(logs) if logs is not None else [0.0] * len(_GRID)
        self.peak = peak
        self.log_wealth = _mean_exp(self.logs)
        self._hit: tuple[float, ...] = ()
        self._miss: tuple[float, ...] = ()
        self._pending = 0  # misses seen, not yet applied

    def at(self, rate: float | None) -> None:
        """The rate to bet against for the next outcomes; None: nothing to bet against yet."""
        self.flush()
        if rate is None or not 0.0 < rate < 1.0:
            self._hit = self._miss = ()
            return
        terms = _alternatives(rate, down=self.down)
        self._hit = tuple(hit for hit, _ in terms)
        self._miss = tuple(miss for _, miss in terms)

    def add(self, outcome: bool) -> None:
        self.n += 1
        self.hits += outcome
        if not self._hit:
            return
        if outcome:
            self.flush()
            self.logs = [w + f for w, f in zip(self.logs, self._hit, strict=True)]
            self._update()
        else:
            self._pending += 1

    def flush(self) -> None:
        """Apply the pending misses (at the end of a batch and before each hit)."""
        if self._pending and self._miss:
            m = self._pending
            self.logs = [w + m * f for w, f in zip(self.logs, self._miss, strict=True)]
            self._update()
        self._pending = 0

    def _update(self) -> None:
        self.log_wealth = _mean_exp(self.logs)
        self.peak = max(self.peak, self.log_wealth)

    def to_json(self) -> dict[str, Any]:
        self.flush()
        return {"n": self.n, "hits": self.hits, "logs": self.logs, "peak": self.peak}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, down: bool = False) -> Bet:
        logs = [float(x) for x in data["logs"]]
        if len(logs) != len(_GRID):
            raise ValueError("a bet's state has the wrong number of components")
        return cls(
            down=down, n=int(data["n"]), hits=int(data["hits"]), logs=logs, peak=float(data["peak"])
        )


REFRESH_GROWTH = 1.05
"""Baseline bounds are recomputed once the baseline has this many times the requests it had
(and at least 50 more)."""


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


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _odds_prior() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The odds ratios (as log shifts above the null) the error judge's bet is spread over, and
    their weights: 90% evenly in log over 1.5x to 10x, the regressions worth catching (at a 1%
    baseline, +0.5 to +9 points), 5% on small ones (1.05x to 1.3x, so that any increase is
    caught in the end) and 5% on gross ones (20x to 10,000x, a canary failing outright against
    a baseline with no errors, caught in two or three errors)."""
    low, high, steps = math.log(1.5), math.log(10.0), 14
    core = [low + (high - low) * i / (steps - 1) for i in range(steps)]
    small = [math.log(r) for r in (1.05, 1.1, 1.2, 1.3)]
    large = [math.log(r) for r in (20.0, 50.0, 200.0, 1000.0, 10000.0)]
    weights = (
        [0.05 / len(small)] * len(small)
        + [0.9 / len(core)] * len(core)
        + [0.05 / len(large)] * len(large)
    )
    return tuple(small + core + large), tuple(math.log(w) for w in weights)


ODDS_SHIFTS, _ODDS_LOG_WEIGHTS = _odds_prior()
_ODDS_FACTORS = tuple(math.exp(shift) for shift in ODDS_SHIFTS)


def _weighted_log(logs: Sequence[float]) -> float:
    """log of the prior-weighted sum of exp(logs) over `ODDS_SHIFTS`."""
    terms = [w + x for w, x in zip(_ODDS_LOG_WEIGHTS, logs, strict=True)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


class OddsBet:
    """A bet, look by look, against "the canary's odds of an error are at most `null` times the
    baseline's", that needs no estimate of the baseline's rate.

    Within one look both releases see the same conditions, so given how many requests each got
    and how many errors there were in all, the canary's share of the errors follows Fisher's
    noncentral hypergeometric distribution with the odds ratio as its parameter (the baseline's
    rate cancels out, even if it changes from one look to the next). This conditional test is
    also the efficient one: its information per look equals the smallest Kullback-Leibler
    divergence from the alternative to any null (p_c = p_b = p, over every p), so knowing the
    baseline's rate only up to its own sampling costs nothing beyond what it must (see
    docs/analysis.md, "How close to the bound").

    The bet is the likelihood ratio of that distribution at larger odds ratios
    (null * e^shift for each of `ODDS_SHIFTS`, weighted by `_odds_prior`) against `null`: by
    monotone likelihood ratio each has expected factor <= 1 whenever the true ratio is at most
    `null`, so the mixture `logs` (each component's log-wealth) is a test supermartingale.

    Near the boundary the bet is scaled down: the wealth becomes V * (1 - lam + lam * R), R the
    mixture's factor for this look, with lam in [0, 1] chosen from the look's margins (before
    the canary's share is seen) so that the smallest winning share lands V exactly on the
    boundary instead of far past it. Any such lam keeps E[factor] <= 1 under the null, so V
    stays a test supermartingale; it loses less on a look without canary errors and crosses no
    later than the pure mixture (it spends the overshoot Ville's bound would waste). `bonus` is
    log(V) minus the pure mixture's log-wealth. A look without an error tells nothing and
    changes nothing.
    """

    __slots__ = ("bonus", "log_wealth", "logs", "peak")

    def __init__(
        self, logs: Iterable[float] | None = None, peak: float = 0.0, bonus: float = 0.0
    ) -> None:
        self.logs = list(logs) if logs is not None else [0.0] * len(ODDS_SHIFTS)
        self.peak = peak
        self.bonus = bonus
        self.log_wealth = _weighted_log(self.logs) + bonus

    def add(
        self,
        canary: tuple[int, int],
        baseline: tuple[int, int],
        null: float | None,
        *,
        boundary: float | None = None,
    ) -> None:
        """(requests, errors) of each release in one look; `boundary`: the log-wealth that
        decides (the bet does not overshoot it), None to bet the pure mixture."""
        (n_c, e_c), (n_b, e_b) = canary, baseline
        total = e_c + e_b
        if null is None or not 0 < null < math.inf or total == 0 or n_c == 0 or n_b == 0:
            return
        support = range(max(0, total - n_b), min(n_c, total) + 1)
        base = math.log(null)
        logs = [_log_choose(n_c, k) + _log_choose(n_b, total - k) + k * base for k in support]
        top = max(logs)
        terms = [math.exp(x - top) for x in logs]  # the null's weights of each share k
        at_null = sum(terms)
        first = support[0]
        # log E_null[(e^shift)^(K - first)] for each alternative, by Horner in e^shift
        costs = []
        for factor in _ODDS_FACTORS:
            value = 0.0
            for term in reversed(terms):
                value = value * factor + term
            costs.append(math.log(value / at_null))
        mixture = _weighted_log(self.logs)
        lam = 1.0
        if boundary is not None and self.log_wealth < boundary:
            win = self._smallest_win(support, costs, mixture)
            if win is not None:
                need = math.expm1(boundary - self.log_wealth)
                # a hair above "exactly on the boundary", so rounding cannot leave it short
                lam = min(1.0, need / win * (1 + 1e-9))
        self.logs = [
            w + (e_c - first) * shift - cost
            for w, shift, cost in zip(self.logs, ODDS_SHIFTS, costs, strict=True)
        ]
        log_factor = _weighted_log(self.logs) - mixture  # R for the share seen
        if lam < 1.0:
            self.bonus += math.log1p(lam * math.expm1(log_factor)) - log_factor
        self.log_wealth = _weighted_log(self.logs) + self.bonus
        self.peak = max(self.peak, self.log_wealth)

    def _smallest_win(self, support: range, costs: list[float], mixture: float) -> float | None:
        """R - 1 at the smallest canary share with R > 1 (R rises with the share): R(k) is the
        posterior-weighted average of the alternatives' likelihood ratios at share k."""
        posterior = [
            math.exp(w + x - mixture - c)
            for w, x, c in zip(_ODDS_LOG_WEIGHTS, self.logs, costs, strict=True)
        ]
        for k in support:
            ratio = sum(
                p * f ** (k - support[0]) for p, f in zip(posterior, _ODDS_FACTORS, strict=True)
            )
            if ratio > 1:
                return ratio - 1
        return None

    def to_json(self) -> dict[str, Any]:
        return {"logs": self.logs, "peak": self.peak, "bonus": self.bonus}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OddsBet:
        logs = [float(x) for x in data["logs"]]
        peak = float(data["peak"])
        if "bonus" not in data:
            # a state from before the weighted prior (16 equally weighted odds ratios): go on
            # from its wealth with the new mixture. A test supermartingale stopped at any time
            # and then multiplied by a fresh one (started at 1) is still one.
            return cls([_mean_exp(logs)] * len(ODDS_SHIFTS), peak)
        if len(logs) != len(ODDS_SHIFTS):
            raise ValueError("a bet's state has the wrong number of components")
        return cls(logs, peak, float(data["bonus"]))


class ErrorRateJudge:
    """Canary error rate against baseline error rate plus `max_increase` (absolute points).

    Without a tolerance, fail is `OddsBet`, look by look, against "odds ratio <= 1": it needs no
    figure of the baseline's, so it gets the whole `false_abort`, and holds even when the
    baseline's rate drifts.

    With a tolerance d, "p_c <= p_b + d" is no fixed odds ratio (and an unbounded one when the
    baseline has no errors), so fail is a `Bet` on each canary request against U + d, U an upper
    confidence bound of the baseline's rate from the looks before; pass is a `down` `Bet` against
    L + d, "p_c >= p_b + d", with L the lower bound. Each bound holds at every moment at once with
    probability 1 - false_abort / 2 and each bet gets the other half, so a false fail and a
    false pass are each at most `false_abort` likely (for a baseline whose rate holds steady).
    """

    def __init__(self, *, false_abort: float, max_increase: float = 0.0) -> None:
        if not 0 < false_abort < 1:
            raise ValueError("false_abort is a probability between 0 and 1")
        self.alpha = false_abort
        self.max_increase = max_increase
        self.baseline_n = 0
        self.baseline_errors = 0
        self.canary_n = 0
        self.canary_errors = 0
        self.odds_bet = OddsBet()
        self.fail_bet = Bet()
        self.pass_bet = Bet(down=True)
        self.decided: Decision = Decision.RUNNING
        self._bounds = (0.0, 1.0)
        self._bounds_at = 0  # baseline requests when the bounds were computed

    @property
    def threshold(self) -> float:
        """Log-wealth that decides: all of false_abort without a tolerance, else half."""
        return math.log((2 if self.max_increase else 1) / self.alpha)

    @property
    def log_evidence(self) -> float:
        return self.fail_bet.log_wealth if self.max_increase else self.odds_bet.log_wealth

    def add_look(
        self, canary_errors: Sequence[bool], baseline_requests: int, baseline_errors: int
    ) -> Outcome:
        """One look: the canary's requests since the last one (error or not, in order) and the
        baseline's counts over the same time."""
        if self.decided is not Decision.RUNNING:
            return self.outcome()
        errors = sum(canary_errors)
        if not self.max_increase:
            self.odds_bet.add(
                (len(canary_errors), errors),
                (baseline_requests, baseline_errors),
                1.0,
                boundary=self.threshold,
            )
            if self.odds_bet.peak >= self.threshold:
                self.decided = Decision.FAIL
        elif self.baseline_n:
            self._bet_each(canary_errors)
        self.canary_n += len(canary_errors)
        self.canary_errors += errors
        self.baseline_n += baseline_requests
        self.baseline_errors += baseline_errors
        if self.max_increase and self.baseline_n >= max(
            self._bounds_at * REFRESH_GROWTH, self._bounds_at + 50
        ):
            # bounds for the next looks (a bound from any earlier moment still holds, since it
            # holds at every moment at once: they are recomputed only as the baseline grows)
            self._bounds = rate_bounds(
                self.baseline_errors,
                self.baseline_n,
                self.alpha / 2,
                near=self._bounds if self._bounds_at else None,
            )
            self._bounds_at = max(self.baseline_n, 1)
        return self.outcome()

    def _bet_each(self, canary_errors: Sequence[bool]) -> None:
        """With a tolerance: request by request, stopping at the first boundary crossed."""
        low, high = self._bounds
        self.fail_bet.at(high + self.max_increase)
        self.pass_bet.at(low + self.max_increase)
        threshold = self.threshold
        for error in canary_errors:
            self.fail_bet.add(error)
            self.pass_bet.add(error)
            # the failing wealth only rises on an error, where it is exact (see Bet.add)
            if error and self.fail_bet.peak >= threshold:
                self.decided = Decision.FAIL
                break
            if self.pass_bet.peak >= threshold:
                self.decided = Decision.PASS
                break
        self.fail_bet.flush()
        self.pass_bet.flush()
        if self.decided is Decision.RUNNING and self.pass_bet.peak >= threshold:
            self.decided = Decision.PASS

    def outcome(self) -> Outcome:
        rate_c = self.canary_errors / self.canary_n if self.canary_n else 0.0
        rate_b = self.baseline_errors / self.baseline_n if self.baseline_n else 0.0
        facts = (
            f"canary {self.canary_errors}/{self.canary_n} errors ({_pct(rate_c)}), baseline "
            f"{self.baseline_errors}/{self.baseline_n} ({_pct(rate_b)})"
        )
        allowed = f"baseline + {_pct(self.max_increase)}" if self.max_increase else "baseline"
        confidence = f"{_pct(1 - self.alpha)} confidence"
        evidence = _evalue(self.log_evidence)
        needed = math.exp(self.threshold)
        if self.decided is Decision.FAIL:
            text = f"error rate above {allowed} ({confidence}): {facts}"
        elif self.decided is Decision.PASS:
            text = f"error rate within {allowed} ({confidence}): {facts}"
        else:
            text = f"watching: {facts}; evidence {evidence:.3g} of {needed:.3g} to fail"
        return Outcome(self.decided, text, self.canary_n, self.baseline_n, evidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": [self.baseline_n, self.baseline_errors],
            "canary": [self.canary_n, self.canary_errors],
            "bounds": [*self._bounds, self._bounds_at],
            "odds": self.odds_bet.to_json(),
            "fail": self.fail_bet.to_json(),
            "pass": self.pass_bet.to_json(),
            "decided": self.decided.value,
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, false_abort: float, max_increase: float
    ) -> ErrorRateJudge:
        judge = cls(false_abort=false_abort, max_increase=max_increase)
        judge.baseline_n, judge.baseline_errors = (int(x) for x in data["baseline"])
        judge.canary_n, judge.canary_errors = (int(x) for x in data["canary"])
        low, high, at = data["bounds"]
        judge._bounds, judge._bounds_at = (float(low), float(high)), int(at)
        judge.odds_bet = OddsBet.from_json(data["odds"])
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


LATENCY_TOLERANCE = 0.05
"""How much slower (relative) a canary may be at p50/p90/p99 before the latency judge fails it,
when the spec gives no `max_increase`: two processes are never identical, and a test with no
tolerance fails any real difference in the end, however small."""
LATENCY_FLOOR = 0.001
"""Seconds: a difference this small is never failed, whatever it is relatively (a canary taking
a twentieth of the traffic answers sub-millisecond requests measurably slower than a baseline
kept hot by the rest: docs/analysis.md, "Latency: tolerance and warm-up")."""
LATENCY_WARMUP = 100
"""The canary's first requests that the latency judge does not judge: a new instance's first
answers (cold code paths, new upstream connections) are slower than it will be."""


class LatencyJudge:
    """Is the canary slower than the baseline (stochastic order), at the median, p90 and p99?

    Slower means beyond a tolerance: at each quantile the canary's may reach `allowed(x)` of the
    baseline's x, the larger of x * (1 + max_increase) and x + floor (the null is "the canary's
    q-quantile is at most allowed(baseline's)"; allowed is increasing, so an upper bound of the
    baseline's quantile gives an upper bound of what is allowed, and the bet stays valid). The
    canary's first `warmup` requests are not judged (the null then speaks of the requests after
    them). Without `max_increase` the tolerance is LATENCY_TOLERANCE and the judge never passes,
    it only watches; with it, it passes once each quantile is shown within the tolerance.
    """

    def __init__(
        self,
        *,
        false_abort: float,
        max_increase: float | None = None,
        floor: float = LATENCY_FLOOR,
        warmup: int = LATENCY_WARMUP,
    ) -> None:
        if not 0 < false_abort < 1:
            raise ValueError("false_abort is a probability between 0 and 1")
        if max_increase is not None and max_increase < 0:
            raise ValueError("max_increase cannot be negative")
        if floor < 0 or warmup < 0:
            raise ValueError("floor and warmup cannot be negative")
        self.alpha = false_abort
        self.max_increase = max_increase  # relative; None: LATENCY_TOLERANCE, never pass
        self.tolerance = LATENCY_TOLERANCE if max_increase is None else max_increase
        self.floor = floor
        self.warmup = warmup
        self.warming = 0  # canary requests seen and left unjudged, up to `warmup`
        self.bins: dict[int, int] = {}
        self.baseline_n = 0
        self.fail_bets = [Bet() for _ in QUANTILES]
        self.pass_bets = [Bet(down=True) for _ in QUANTILES]
        self.decided: Decision = Decision.RUNNING
        self.upper: list[float | None] = [None] * len(QUANTILES)
        self.lower: list[float | None] = [None] * len(QUANTILES)
        self._bounds_at = 0

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
        if self.baseline_n >= max(self._bounds_at * REFRESH_GROWTH, self._bounds_at + 50):
            self._refresh_bounds()  # stale bounds still hold: see ErrorRateJudge.add_baseline
            self._bounds_at = max(self.baseline_n, 1)

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

    def allowed(self, baseline: float) -> float:
        """The slowest a canary's quantile may be, given the baseline's (increasing in it)."""
        return max(baseline * (1 + self.tolerance), baseline + self.floor)

    def add_canary(self, latencies: Iterable[float]) -> Outcome:
        threshold = self.threshold
        for i, q in enumerate(QUANTILES):
            upper, lower = self.upper[i], self.lower[i]
            self.fail_bets[i].at(None if upper is None else 1 - q)
            self.pass_bets[i].at(None if lower is None or self.max_increase is None else 1 - q)
        uppers = [math.inf if u is None else self.allowed(u) for u in self.upper]
        lowers = [math.inf if v is None else self.allowed(v) for v in self.lower]
        for seconds in latencies:
            if self.decided is not Decision.RUNNING:
                break
            if self.warming < self.warmup:
                self.warming += 1
                continue
            raised = False
            for i in range(len(QUANTILES)):
                above = seconds > uppers[i]
                raised = raised or above
                self.fail_bets[i].add(above)
                self.pass_bets[i].add(seconds > lowers[i])
            # a wealth with misses pending only overstates itself, and an average is at most
            # its largest part: flush and average only when the largest could be enough
            if (
                raised
                and max(b.log_wealth for b in self.fail_bets) >= threshold
                and self._mean_log_wealth(self.fail_bets) >= threshold
            ):
                self.decided = Decision.FAIL
            elif self.max_increase is not None and self._all_passed(threshold):
                self.decided = Decision.PASS
        for bet in (*self.fail_bets, *self.pass_bets):
            bet.flush()
        if (
            self.decided is Decision.RUNNING
            and self.max_increase is not None
            and self._all_passed(threshold)
        ):
            self.decided = Decision.PASS
        return self.outcome()

    def _all_passed(self, threshold: float) -> bool:
        """Intersection-union: pass needs every quantile's bet to have crossed, each at the
        full level (a canary slower at some quantile must beat that quantile's bet)."""
        return all(b.peak >= threshold for b in self.pass_bets)

    @staticmethod
    def _mean_log_wealth(bets: list[Bet]) -> float:
        """log of the average wealth (an average of test supermartingales is one too), with
        every pending miss applied first so no wealth is overstated."""
        for bet in bets:
            bet.flush()
        return _mean_exp([b.log_wealth for b in bets])

    def outcome(self) -> Outcome:
        canary_n = self.fail_bets[0].n
        shares = ", ".join(
            f"p{round(q * 100)} {b.hits}/{b.n}"
            for q, b in zip(QUANTILES, self.fail_bets, strict=True)
        )
        bounds = ", ".join(
            f"p{round(q * 100)} {_ms(None if u is None else self.allowed(u))}"
            for q, u in zip(QUANTILES, self.upper, strict=True)
        )
        facts = (
            f"canary requests above the baseline's bound + {self._tolerated()} ({bounds}): "
            f"{shares}; {self.baseline_n} baseline requests"
        )
        if self.warming:
            facts += f"; the canary's first {self.warming} not judged (warm-up)"
        evidence = _evalue(self._mean_log_wealth(self.fail_bets))
        confidence = f"{_pct(1 - self.alpha)} confidence"
        if self.decided is Decision.FAIL:
            text = (
                f"canary slower than baseline by more than {self._tolerated()} "
                f"({confidence}): {facts}"
            )
        elif self.decided is Decision.PASS:
            text = (
                f"canary at most {self._tolerated()} slower at p50/p90/p99 "
                f"({confidence}); {canary_n} canary, {self.baseline_n} baseline requests"
            )
        else:
            text = f"watching: {facts}; evidence {evidence:.3g} of {2 / self.alpha:g} to fail"
        return Outcome(self.decided, text, canary_n, self.baseline_n, evidence)

    def _tolerated(self) -> str:
        return f"max({_pct(self.tolerance)}, {_ms(self.floor)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "warming": self.warming,
            "bins": {str(k): v for k, v in sorted(self.bins.items())},
            "fail": [b.to_json() for b in self.fail_bets],
            "pass": [b.to_json() for b in self.pass_bets],
            "decided": self.decided.value,
        }

    @classmethod
    def from_json(
        cls,
        data: Mapping[str, Any],
        *,
        false_abort: float,
        max_increase: float | None,
        floor: float = LATENCY_FLOOR,
        warmup: int = LATENCY_WARMUP,
    ) -> LatencyJudge:
        judge = cls(false_abort=false_abort, max_increase=max_increase, floor=floor, warmup=warmup)
        # a state from before the warm-up: its judge was already judging
        judge.warming = int(data.get("warming", warmup))
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
