"""Where do a healthy canary's latencies differ from the baseline's? Reads the router samples
that `bench/analysis_abort.py --watch-healthy N --samples FILE` copied, and prints:

- per minute since the canary's first request: each release's p50/p90/p99 and how many canary
  requests lie above the baseline's p50/p90/p99 (the share a canary as good as the baseline
  keeps at or below 50 %, 10 %, 1 %);
- the canary's first K requests against the rest (a cold start shows in the first ones);
- the same shares above what the latency judge allows (the baseline's quantile + max(5 %,
  1 ms) by default);
- the latency judge replayed on the samples, a look a second (first canary request at 0 s),
  with and without its tolerance and warm-up: when it would have failed the canary.

    python bench/watch_samples.py FILE [--tolerance 0.05] [--floor 0.001] [--warmup 100]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from zerodown.core.analysis.sequential import Decision, LatencyJudge
from zerodown.core.analysis.stats import quantile

CANARY, BASELINE = "healthy", "good"
QS = (0.5, 0.9, 0.99)


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return "/".join(f"{quantile(ordered, q) * 1000:.2f}" for q in QS)


def _above(values: Sequence[float], bounds: Sequence[float]) -> str:
    if not values:
        return "-"
    return " ".join(f"{sum(v > b for v in values) / len(values):.1%}" for b in bounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--floor", type=float, default=0.001, help="seconds")
    parser.add_argument("--warmup", type=int, default=100, help="canary requests")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.file.read_text().splitlines() if line]
    canary = sorted((ts, lat) for r, ts, lat, st in rows if r == CANARY and st >= 100)
    baseline = sorted((ts, lat) for r, ts, lat, st in rows if r == BASELINE and st >= 100)
    start = canary[0][0]
    baseline = [(ts, lat) for ts, lat in baseline if ts >= start]
    whole = sorted(lat for _, lat in baseline)
    bounds = [quantile(whole, q) for q in QS]
    print(
        f"{len(canary)} canary, {len(baseline)} baseline requests; baseline p50/p90/p99 over "
        f"the watch {_ms(whole)} ms\n"
    )
    print(
        "| minute | canary n | canary p50/p90/p99 ms | baseline p50/p90/p99 ms "
        "| canary above the baseline's p50 p90 p99 (whole watch) | same, baseline of that minute |"
    )
    print("|---|---|---|---|---|---|")
    minutes = int((canary[-1][0] - start) // 60) + 1
    for m in range(minutes):
        c = [lat for ts, lat in canary if m <= (ts - start) / 60 < m + 1]
        b = sorted(lat for ts, lat in baseline if m <= (ts - start) / 60 < m + 1)
        local = [quantile(b, q) for q in QS] if b else bounds
        print(
            f"| {m + 1} | {len(c)} | {_ms(c)} | {_ms(b)} | {_above(c, bounds)} "
            f"| {_above(c, local)} |"
        )
    print()
    print(
        "| canary requests | p50/p90/p99 ms | above the baseline's p50 p90 p99 "
        f"| above them + max({args.tolerance:.0%}, {args.floor * 1000:g} ms) |"
    )
    print("|---|---|---|---|")
    lats = [lat for _, lat in canary]
    raised = [max(b * (1 + args.tolerance), b + args.floor) for b in bounds]
    for lo, hi in ((0, 50), (50, 200), (200, 1000), (1000, len(lats)), (0, len(lats))):
        part = lats[lo:hi]
        print(f"| {lo + 1}-{hi} | {_ms(part)} | {_above(part, bounds)} | {_above(part, raised)} |")
    print()
    every = [(CANARY, ts, lat) for ts, lat in canary] + [
        (BASELINE, ts, lat) for ts, lat in baseline
    ]
    t, floor, warmup = args.tolerance, args.floor, args.warmup
    for name, tolerance, kw in (
        ("no tolerance, no warm-up", 0.0, {"floor": 0.0, "warmup": 0}),
        (f"warm-up {warmup} only", 0.0, {"floor": 0.0, "warmup": warmup}),
        (f"tolerance {t:.0%} (no floor), warm-up {warmup}", t, {"floor": 0.0, "warmup": warmup}),
        (f"tolerance max({t:.0%}, {floor * 1000:g} ms) only", t, {"floor": floor, "warmup": 0}),
        (
            f"tolerance max({t:.0%}, {floor * 1000:g} ms), warm-up {warmup}",
            t,
            {"floor": floor, "warmup": warmup},
        ),
    ):
        print(f"replayed, {name}: {replay(every, start, tolerance, kw)}")
    return 0


def replay(
    samples: list[tuple[str, float, float]], start: float, tolerance: float, kw: dict[str, float]
) -> str:
    """The latency judge (false_abort 1 %, watching only, as without max_increase in the spec)
    fed a look a second, the baseline's requests first."""
    judge = LatencyJudge(false_abort=0.01, **kw)  # type: ignore[arg-type]
    judge.tolerance = tolerance  # a tolerance without passing: max_increase would pass
    end = max(ts for _, ts, _ in samples)
    second = 0
    outcome = None
    while start + second <= end + 1:
        lo, hi = start + second - 1, start + second
        look = [(r, lat) for r, ts, lat in samples if lo <= ts < hi]
        judge.add_baseline(lat for r, lat in look if r == BASELINE)
        outcome = judge.add_canary(lat for r, lat in look if r == CANARY)
        if outcome.decision is not Decision.RUNNING:
            return f"{outcome.decision.value} at {second} s: {outcome.message}"
        second += 1
    assert outcome is not None
    return f"still running after {second} s: {outcome.message}"


if __name__ == "__main__":
    raise SystemExit(main())
