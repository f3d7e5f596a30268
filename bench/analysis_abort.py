"""Bench: how fast does background analysis abort a bad canary, and what does it cost?

A canary at 5% weight fails a fifth of its requests (the sample app's `fail_rate` fault). The
background analysis on the router provider measures its error rate every second and fails it when
`result > 0.05`. At 300 requests/s through the router, each round measures:

- from the first bad (5xx) response of the canary to the abort, taken from the decision log
  (`GET /api/events`, the "aborted" record's `at`: recorded before the route change is applied);
- the same, up to the last canary response the load generator saw (when weight 0 took effect);
- how many requests failed in between, and in the whole round.

    python bench/analysis_abort.py [--rate 300] [--rounds 5] [--fail-rate 0.2]
                                   [--interval 1s] [--failure-limit 0]
                                   [--judge threshold|sequential] [--false-abort 1%]
                                   [--max-increase 1%] [--watch-healthy MINUTES] [--router haproxy]

With `--judge sequential` the background analysis is issue 18's pair of sequential judges
instead (errors with max_increase, latency canary_slower); `--watch-healthy 10` then deploys a
canary as good as the stable release and watches it for ten minutes: it must not be aborted.

`--router haproxy` runs the same rounds through a zerodown-managed HAProxy (the analysis reads
its per-request log, routers/accesslog.py) instead of the built-in router.

Only loopback traffic; a throwaway workspace; every process it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from benchkit import wait_status

from zerodown.control.client import ApiError, Client
from zerodown.control.process import shut_down, start_controller
from zerodown.demo.tour import sample_app_spec
from zerodown.loadgen import LoadGenerator, Report
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.proxy.client import ProxyRouter

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"
GOOD = "good"


def bad_version(n: int) -> str:
    return f"bad{n}"


HEALTHY = "healthy"  # no faults: as good as the stable release


def sequential_metrics(
    interval: str, false_abort: str, max_increase: str, latency_max_increase: str = ""
) -> list[dict[str, Any]]:
    """Issue 18's example: both sequential judges, on the router's samples. Latency's
    max_increase: '' = its default, 'off' = no latency judge (only the error judge watches)."""
    errors: dict[str, Any] = {"metric": "error_rate", "false_abort": false_abort}
    if max_increase:
        errors["max_increase"] = max_increase
    latency: dict[str, Any] = {
        "metric": "latency",
        "stochastic_order": "canary_slower",
        "false_abort": false_abort,
    }
    if latency_max_increase not in ("", "off"):
        latency["max_increase"] = latency_max_increase
    metrics: list[dict[str, Any]] = [
        {
            "name": "errors",
            "provider": "router",
            "interval": interval,
            "judge": {"sequential": errors},
        },
        {
            "name": "latency",
            "provider": "router",
            "interval": interval,
            "judge": {"sequential": latency},
        },
    ]
    return metrics[:1] if latency_max_increase == "off" else metrics


def bench_spec(
    port: int,
    *,
    rounds: int,
    fail_rate: float,
    interval: str = "1s",
    failure_limit: int = 0,
    judge: str = "threshold",
    false_abort: str = "1%",
    max_increase: str = "1%",
    latency_max_increase: str = "",
    pause: str = "2m",
) -> dict[str, Any]:
    faults = {bad_version(n): {"fail_rate": fail_rate} for n in range(1, rounds + 1)}
    metrics: list[dict[str, Any]] = [
        {
            # defaults otherwise: min_samples 50, initial_delay one
            # interval, window since the start (at most 60 s)
            "name": "error-rate",
            "provider": "router",
            "query": "error_rate",
            "interval": interval,
            "failure_condition": "result > 0.05",
            "failure_limit": failure_limit,
        }
    ]
    if judge == "sequential":
        metrics = sequential_metrics(interval, false_abort, max_increase, latency_max_increase)
    return {
        **sample_app_spec(port, faults),
        "analysis": {"templates": {"health": {"metrics": metrics}}},
        "strategy": {
            "canary": {
                "analysis": {"templates": ["health"]},
                # the canary sits at 5% until analysis decides; a bad one never leaves this step
                "steps": [{"set_weight": 5}, {"pause": {"duration": pause}}, {"set_weight": 100}],
            }
        },
    }


@dataclass(frozen=True)
class Round:
    version: str
    requests: int
    canary_requests: int
    first_canary: float  # wall clock: first request the canary answered
    first_bad: float  # wall clock: first 5xx response of the canary (received)
    aborted_at: float  # wall clock: the "aborted" decision record
    last_canary: float  # wall clock: last response of the canary (received)
    failed_between: int  # failed requests from the first bad response to the last canary one
    failed_total: int  # failed requests in the whole round
    failed_canary: int  # of those, 5xx answered by the canary itself (its injected faults)
    reason: str

    @property
    def to_decision(self) -> float:
        return self.aborted_at - self.first_bad

    @property
    def to_weight_zero(self) -> float:
        return self.last_canary - self.first_bad

    @property
    def canary_to_decision(self) -> float:
        return self.aborted_at - self.first_canary


def deploy(client: Client, version: str, spec: dict[str, Any]) -> None:
    # The previous round's canary may still be cleaning up; the controller then says 409.
    deadline = time.monotonic() + 30
    while True:
        try:
            client.post("/api/deploy", {"version": version, "spec": spec, "who": "bench"})
            return
        except ApiError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def one_round(client: Client, spec: dict[str, Any], version: str, port: int, rate: float) -> Round:
    before = client.get("/api/events", limit=1)
    after_id = before[-1]["id"] if before else 0
    # nginx applies each table by a reload, which closes idle keep-alive client connections:
    # clients like browsers send a GET again then (counted in report.retried), see loadgen.py
    nginx = spec.get("router", {}).get("kind") == "nginx"
    with LoadGenerator(
        f"http://127.0.0.1:{port}/", rate=rate, max_seconds=90, browser_like=nginx
    ) as load:
        time.sleep(1)
        deploy(client, version, spec)
        state = wait_status(
            client,
            lambda s: s["rollout"]["version"] == version and s["rollout"]["phase"] == "aborted",
            timeout=60,
            what=f"analysis to abort {version}",
        )
        time.sleep(1.5)  # traffic after the abort shows that weight 0 held
    events = client.get("/api/events", after=after_id, limit=500)
    aborted = [e for e in events if e["kind"] == "aborted"]
    if not aborted:
        raise RuntimeError(f"no 'aborted' record after deploying {version}: {events[-5:]}")
    return measure(version, load.report, aborted[0]["at"], state["status"]["rollout"]["reason"])


def measure(version: str, report: Report, aborted_at: float, reason: str) -> Round:
    canary = [s for s in report.samples if s.version == version]
    bad = [s for s in canary if s.failed]
    if not bad:
        raise RuntimeError(f"{version} was aborted before it answered a single 5xx: {reason}")
    first_bad = min(s.at + s.latency for s in bad)
    last_canary = max(s.at + s.latency for s in canary)
    between = [s for s in report.failed if first_bad <= s.at + s.latency <= last_canary]
    return Round(
        version=version,
        requests=report.total,
        canary_requests=len(canary),
        first_canary=min(s.at + s.latency for s in canary),
        first_bad=first_bad,
        aborted_at=aborted_at,
        last_canary=last_canary,
        failed_between=len(between),
        failed_total=len(report.failed),
        failed_canary=len(bad),
        reason=reason,
    )


@dataclass(frozen=True)
class Watch:
    minutes: float
    aborted: bool
    canary_requests: int
    failed: int
    metrics: list[str]  # each metric's last word at the end of the watch


class Recorder:
    """Copies the built-in router's per-request samples (what the judges read) of the stable
    release and the canary to a JSON-lines file, every 5 s: the router keeps only its last
    20,000 per release. Each line: [release, timestamp, latency_seconds, status]."""

    def __init__(self, socket: Path, out: Path) -> None:
        self.socket, self.out = socket, out
        self.since = {GOOD: 0.0, HEALTHY: 0.0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self.since = dict.fromkeys(self.since, time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._poll()

    def _run(self) -> None:
        while not self.stop.wait(5):
            self._poll()

    def _poll(self) -> None:
        async def read() -> dict[str, list[tuple[float, float, int]]]:
            async with ProxyRouter(str(self.socket)) as router:
                return {r: await router.samples(r, since) for r, since in self.since.items()}

        with self.out.open("a") as f:
            for release, samples in asyncio.run(read()).items():
                for ts, latency, status in samples:
                    f.write(json.dumps([release, ts, latency, status]) + "\n")
                if samples:
                    self.since[release] = max(s[0] for s in samples)


def watch_healthy(
    client: Client,
    spec: dict[str, Any],
    port: int,
    rate: float,
    minutes: float,
    record: tuple[Path, Path] | None = None,
) -> Watch:
    """A canary as good as the stable release, watched at 5% for `minutes`: it must not be
    aborted. Aborted by hand at the end (the bench keeps the stable release). `record`: (the
    router's admin socket, a file) to copy the router's samples to (`Recorder`)."""
    with (
        LoadGenerator(
            f"http://127.0.0.1:{port}/", rate=rate, max_seconds=minutes * 60 + 60
        ) as load,
        Recorder(*record) if record else contextlib.nullcontext(),
    ):
        time.sleep(1)
        deploy(client, HEALTHY, spec)
        wait_status(
            client,
            lambda s: s["rollout"]["version"] == HEALTHY and s["rollout"]["step"] >= 1,
            timeout=60,
            what="the healthy canary to get traffic",
        )
        deadline = time.monotonic() + minutes * 60
        aborted = False
        while time.monotonic() < deadline and not aborted:
            time.sleep(1)
            rollout = client.get("/api/status")["status"]["rollout"]
            aborted = rollout["phase"] == "aborted"
        check = rollout["checks"].get("analysis:background", {})
        result = check.get("detail", {}).get("result", {})
        last = [f"{m['name']}: {m['phase']}: {m['message']}" for m in result.get("metrics", [])]
        if not aborted:
            client.post("/api/abort", {"who": "bench"})
    canary = [s for s in load.report.samples if s.version == HEALTHY]
    return Watch(minutes, aborted, len(canary), len(load.report.failed), last)


def table(rounds: list[Round]) -> str:
    lines = [
        "| round | first 5xx → abort decision (s) | first 5xx → last canary response (s) "
        "| canary's first response → abort decision (s) | failed meanwhile | failed / total "
        "in round | of them the canary's own 5xx | canary requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(rounds, 1):
        lines.append(
            f"| {n} | {r.to_decision:.2f} | {r.to_weight_zero:.2f} | {r.canary_to_decision:.2f}"
            f" | {r.failed_between} | {r.failed_total} / {r.requests} | {r.failed_canary}"
            f" | {r.canary_requests} |"
        )
    return "\n".join(lines)


def summary(rounds: list[Round], router: str) -> dict[str, object]:
    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "router": router,
        "rounds": len(rounds),
        "to_decision_s": spread([r.to_decision for r in rounds]),
        "to_weight_zero_s": spread([r.to_weight_zero for r in rounds]),
        "failed_between": spread([float(r.failed_between) for r in rounds]),
        "failed_total": sum(r.failed_total for r in rounds),
        "failed_canary": sum(r.failed_canary for r in rounds),
        "requests": sum(r.requests for r in rounds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--interval", default="1s", help="the metric's interval")
    parser.add_argument("--failure-limit", type=int, default=0, help="the metric's failure_limit")
    parser.add_argument(
        "--judge",
        choices=["threshold", "sequential"],
        default="threshold",
        help="threshold: error_rate > 0.05 every interval; sequential: issue 18's judges",
    )
    parser.add_argument("--false-abort", default="1%", help="sequential judges' false_abort")
    parser.add_argument(
        "--max-increase", default="1%", help="sequential error judge's max_increase ('' = none)"
    )
    parser.add_argument(
        "--latency-max-increase",
        default="",
        help="sequential latency judge's max_increase ('' = its default, 'off' = no latency judge)",
    )
    parser.add_argument(
        "--watch-healthy",
        type=float,
        default=0,
        metavar="MINUTES",
        help="then watch a healthy canary this long (it must not be aborted)",
    )
    parser.add_argument(
        "--samples",
        type=Path,
        help="with --watch-healthy (built-in router): copy the router's samples of both releases "
        "here (JSON lines; bench/watch_samples.py summarises them)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    parser.add_argument("--router", default="builtin", help="router kind: builtin, haproxy, …")
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="zerodown-bench-abort-"))
    shutil.copy(APP, root / "app.py")
    port = free_port()
    spec = bench_spec(
        port,
        rounds=args.rounds,
        fail_rate=args.fail_rate,
        interval=args.interval,
        failure_limit=args.failure_limit,
        judge=args.judge,
        false_abort=args.false_abort,
        max_increase=args.max_increase,
        latency_max_increase=args.latency_max_increase,
        pause=f"{max(2.0, args.watch_healthy + 2):g}m",
    )
    spec["router"] = {**spec.get("router", {}), "kind": args.router}
    (root / "zerodown.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    paths = Paths.for_spec(root / "zerodown.yaml")
    judged = (
        f"error-rate every {args.interval}, failure_condition result > 0.05, "
        f"failure_limit {args.failure_limit}"
        if args.judge == "threshold"
        else f"sequential judges (errors: max_increase {args.max_increase or 'none'}, latency: "
        f"canary_slower, max_increase {args.latency_max_increase or 'default'}), false_abort {args.false_abort}, a look every {args.interval}"
    )
    print(
        f"canary at 5% failing {args.fail_rate:.0%} of its requests; {args.rate:g} req/s through "
        f"the {args.router} router; {judged}; workspace {root}\n",
        flush=True,
    )
    watch: Watch | None = None
    rounds: list[Round] = []
    started = False
    try:
        start_controller(paths)
        started = True
        with Client(paths) as client:
            client.post("/api/deploy", {"version": GOOD, "spec": spec, "who": "bench"})
            wait_status(
                client,
                lambda s: s["stable"] == GOOD,
                timeout=60,
                what="the stable one, served",
                routed=True,  # as `zerodown up` waits: the load starts once the router serves it
            )
            for n in range(1, args.rounds + 1):
                r = one_round(client, spec, bad_version(n), port, args.rate)
                rounds.append(r)
                print(
                    f"round {n}: decision {r.to_decision:.2f}s, last canary response "
                    f"{r.to_weight_zero:.2f}s after the first 5xx; {r.failed_between} failed "
                    f"meanwhile; {r.reason}",
                    flush=True,
                )
                time.sleep(2)  # let the aborted canary's instances stop before the next one
            if args.watch_healthy:
                record = (paths.router_socket, args.samples) if args.samples else None
                watch = watch_healthy(
                    client, spec, port, args.rate, args.watch_healthy, record=record
                )
    finally:
        if started:
            shut_down(paths, who="bench", timeout=60)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rounds))
    if rounds:
        print()
        print(
            "median: first 5xx → abort decision "
            f"{statistics.median(r.to_decision for r in rounds):.2f} s; "
            f"first 5xx → last canary response {statistics.median(r.to_weight_zero for r in rounds):.2f} s; "
            f"failed meanwhile {statistics.median(r.failed_between for r in rounds):g}; "
            f"failed in round {statistics.median(r.failed_total for r in rounds):g}"
        )
    if args.json:
        args.json.write_text(json.dumps({"abort": summary(rounds, args.router)}, indent=1))
    if watch is not None:
        print()
        verdict = "ABORTED (a false abort)" if watch.aborted else "not aborted"
        print(
            f"healthy canary watched {watch.minutes:g} min at 5%: {verdict}; "
            f"{watch.canary_requests} canary requests, {watch.failed} failed requests in all"
        )
        for line in watch.metrics:
            print(f"  {line}")
        return 1 if watch.aborted else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
