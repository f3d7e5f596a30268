"""The statistical judge: canary against baseline, in the manner of Netflix's Kayenta.

For each metric, the Mann-Whitney U test asks whether canary samples (per-request latencies, or
per-interval error rates) tend to be larger than baseline samples; the effect size says by how
much. Kayenta's ACA judge does the same with a confidence interval and allowed increase.

- Test: one-sided Mann-Whitney U ("canary greater"), normal approximation with tie correction
  and continuity correction, as in scipy.stats.mannwhitneyu(method="asymptotic").
- Effect size: Vargha-Delaney A = U / (n1 * n2), the probability that a random canary sample is
  larger than a random baseline sample (ties count half). 0.5 = no difference; Vargha and
  Delaney (2000) call 0.56 small, 0.64 medium, 0.71 large.
- Score per metric:
    A <= allowed_effect                         -> pass     (no difference that matters)
    A >  allowed_effect and p <  1 - confidence -> fail     (confidently worse by too much)
    A >  allowed_effect and p >= 1 - confidence -> marginal (looks worse, not enough evidence)
- Overall: fail if any metric fails, marginal if any is marginal, else pass; the score is the
  percentage of metrics that pass (a marginal one counts half), as in Kayenta's summary score.

Pure Python: no scipy in the controller; the tests use scipy as an oracle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zerodown.core.analysis.model import Verdict

MIN_JUDGE_SAMPLES = 3
"""Below this many samples on either side the normal approximation means nothing."""


@dataclass(frozen=True, slots=True)
class MannWhitney:
    u: float  # U statistic of the canary sample
    z: float
    p_greater: float  # one-sided p-value: canary stochastically greater than baseline
    effect: float  # Vargha-Delaney A
    n_canary: int
    n_baseline: int


def _ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) and the tie term sum(t^3 - t) over groups of equal values."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_term = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        average = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = average
        size = j - i + 1
        tie_term += size**3 - size
        i = j + 1
    return ranks, tie_term


def mann_whitney(canary: Sequence[float], baseline: Sequence[float]) -> MannWhitney:
    n1, n2 = len(canary), len(baseline)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs samples on both sides")
    ranks, tie_term = _ranks([*canary, *baseline])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        # every sample equal: no evidence either way
        return MannWhitney(u, 0.0, 1.0, u / (n1 * n2), n1, n2)
    z = (u - mean - 0.5) / math.sqrt(variance)
    p = 0.5 * math.erfc(z / math.sqrt(2))
    return MannWhitney(u, z, min(1.0, max(0.0, p)), u / (n1 * n2), n1, n2)


@dataclass(frozen=True, slots=True)
class JudgeResult:
    verdict: Verdict
    test: MannWhitney | None
    message: str


def judge(
    canary: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float,
    allowed_effect: float,
) -> JudgeResult:
    """Score one metric; too few samples is marginal (never a pass)."""
    if len(canary) < MIN_JUDGE_SAMPLES or len(baseline) < MIN_JUDGE_SAMPLES:
        return JudgeResult(
            Verdict.MARGINAL,
            None,
            f"too few samples to judge ({len(canary)} canary, {len(baseline)} baseline)",
        )
    test = mann_whitney(canary, baseline)
    alpha = 1 - confidence
    facts = f"A={test.effect:.2f} (allowed {allowed_effect:.2f}), p={test.p_greater:.3g}"
    if test.effect <= allowed_effect:
        return JudgeResult(Verdict.PASS, test, f"pass: {facts}")
    if test.p_greater < alpha:
        return JudgeResult(
            Verdict.FAIL, test, f"fail: canary worse than baseline at {confidence:.0%}; {facts}"
        )
    return JudgeResult(Verdict.MARGINAL, test, f"marginal: looks worse, not significant; {facts}")


@dataclass(frozen=True, slots=True)
class Score:
    verdict: Verdict
    score: float  # 0-100: share of metrics that pass, marginal counting half
    counts: dict[Verdict, int]


def overall(verdicts: Iterable[Verdict]) -> Score | None:
    """Kayenta-style summary of per-metric verdicts; None when no metric was judged."""
    items = list(verdicts)
    if not items:
        return None
    counts = {v: items.count(v) for v in Verdict}
    score = 100 * (counts[Verdict.PASS] + 0.5 * counts[Verdict.MARGINAL]) / len(items)
    if counts[Verdict.FAIL]:
        verdict = Verdict.FAIL
    elif counts[Verdict.MARGINAL]:
        verdict = Verdict.MARGINAL
    else:
        verdict = Verdict.PASS
    return Score(verdict, score, counts)
