"""Bench: how long a person's command takes to move traffic — blue-green rollback and canary abort.

Under steady load through the router, each round:

- blue-green: deploys a new version (preview, no auto-promotion, scale_down_delay 5 m), promotes
  it, then rolls back inside scale_down_delay (one route change, no launch), and measures from
  the rollback call to the moment every response came from the old release;
- canary: deploys a new version at 50 % and pauses, then aborts, and measures from the abort
  call to the last response of the canary.

Both are timed from the API call (the CLI adds its own start-up, ~0.7 s of Python imports).
Prints each round, the median and the range, and with --json writes them for bench/all.

    python bench/switch_bench.py [--rounds 5] [--rate 300] [--json out.json]

Only loopback traffic; a throwaway workspace; everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from benchkit import wait_status

from zerodown.control.client import ApiError, Client
from zerodown.control.process import shut_down, start_controller
from zerodown.demo.tour import sample_app_spec
from zerodown.loadgen import LoadGenerator, Sample
from zerodown.net import free_port
from zerodown.paths import Paths

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def post(client: Client, path: str, body: dict[str, Any]) -> None:
    deadline = time.monotonic() + 30  # a previous round may still be cleaning up: 409
    while True:
        try:
            client.post(path, {"who": "bench", **body})
            return
        except ApiError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def received(s: Sample) -> float:
    return s.at + s.latency


def all_from(samples: Sequence[Sample], version: str, since: float) -> float:
    """Seconds after `since` until every response came from `version`."""
    after = [s for s in samples if received(s) >= since and not s.failed]
    last_other = max((received(s) for s in after if s.version != version), default=since)
    if not any(s.version == version and received(s) > last_other for s in after):
        raise RuntimeError(f"no response of {version} alone came after the switch")
    return last_other - since


def rollback_round(
    client: Client, spec: dict[str, Any], old: str, new: str, url: str, rate: float
) -> dict[str, Any]:
    post(client, "/api/deploy", {"version": new, "spec": spec})
    wait_status(client, lambda s: s["rollout"]["phase"] == "paused", what=f"{new}'s preview")
    post(client, "/api/promote", {})
    wait_status(client, lambda s: s["stable"] == new, what=f"the switch to {new}")
    with LoadGenerator(url, rate=rate, max_seconds=30) as load:
        time.sleep(1)
        called = time.time()
        post(client, "/api/rollback", {})
        time.sleep(1.5)
    report = load.report
    return {
        "seconds": all_from(report.samples, old, called),
        "failed": len(report.failed),
        "requests": report.total,
    }


def abort_round(
    client: Client, spec: dict[str, Any], new: str, url: str, rate: float
) -> dict[str, Any]:
    post(client, "/api/deploy", {"version": new, "spec": spec})
    wait_status(
        client,
        lambda s: s["rollout"]["version"] == new and s["rollout"]["phase"] == "paused",
        what=f"{new} at 50 %",
    )
    with LoadGenerator(url, rate=rate, max_seconds=30) as load:
        time.sleep(1)
        called = time.time()
        post(client, "/api/abort", {})
        time.sleep(1.5)
    report = load.report
    canary = [received(s) for s in report.samples if s.version == new]
    if not canary:
        raise RuntimeError(f"{new} answered nothing before the abort")
    wait_status(client, lambda s: s["rollout"]["phase"] == "aborted", what=f"{new} to be aborted")
    return {
        "seconds": max(0.0, max(canary) - called),
        "failed": len(report.failed),
        "requests": report.total,
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in rounds]
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "failed": sum(r["failed"] for r in rounds),
        "requests": sum(r["requests"] for r in rounds),
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zerodown-bench-switch-"))
    shutil.copy(APP, root / "app.py")
    port = free_port()
    base = sample_app_spec(port, {})
    bluegreen = {
        **base,
        "strategy": {
            "blue_green": {
                "preview_listen": f"127.0.0.1:{free_port()}",
                "auto_promote": False,
                "scale_down_delay": "5m",
            }
        },
    }
    canary = {
        **base,
        "strategy": {"canary": {"steps": [{"set_weight": 50}, {"pause": {}}, {"set_weight": 100}]}},
    }
    (root / "zerodown.yaml").write_text(yaml.safe_dump(bluegreen, sort_keys=False))
    paths = Paths.for_spec(root / "zerodown.yaml")
    url = f"http://127.0.0.1:{port}/"
    print(f"{args.rate:g} req/s through the router, {args.rounds} rounds each; workspace {root}")
    rollbacks: list[dict[str, Any]] = []
    aborts: list[dict[str, Any]] = []
    start_controller(paths)
    try:
        with Client(paths) as client:
            post(client, "/api/deploy", {"version": "v0", "spec": bluegreen})
            wait_status(client, lambda s: s["stable"] == "v0", what="v0")
            for n in range(1, args.rounds + 1):
                r = rollback_round(client, bluegreen, "v0", f"bg{n}", url, args.rate)
                rollbacks.append(r)
                print(
                    f"blue-green rollback {n}: all on v0 {r['seconds']:.3f} s after the call,"
                    f" {r['failed']} failed of {r['requests']}",
                    flush=True,
                )
            for n in range(1, args.rounds + 1):
                r = abort_round(client, canary, f"c{n}", url, args.rate)
                aborts.append(r)
                print(
                    f"canary abort {n}: last canary response {r['seconds']:.3f} s after the"
                    f" call, {r['failed']} failed of {r['requests']}",
                    flush=True,
                )
                wait_status(client, lambda s: s["rollout"]["phase"] == "aborted", what="the abort")
    finally:
        shut_down(paths, who="bench", timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    result = {"bluegreen_rollback": summary(rollbacks), "canary_abort": summary(aborts)}
    for name, s in result.items():
        print(
            f"{name}: median {s['median_s']:.3f} s (range {s['min_s']:.3f}-{s['max_s']:.3f}),"
            f" {s['failed']} failed of {s['requests']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"switch": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
