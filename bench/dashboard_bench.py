"""Bench: what the dashboard costs the controller — the page's size, and how fast the controller
answers the reads the page repeats (GET /api/status every second, /api/series every 2 s,
/api/plan every 5 s) for a service paused mid-canary with a background analysis running.

    python bench/dashboard_bench.py [--requests 300] [--json out.json]

Only loopback traffic; a throwaway workspace; everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from benchkit import wait_status

from zerodown.api.dashboard import WEB
from zerodown.control.client import Client, controller_url
from zerodown.control.process import shut_down, start_controller
from zerodown.demo.tour import demo_spec
from zerodown.loadgen import LoadGenerator
from zerodown.net import free_port
from zerodown.paths import Paths

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"
READS = ("/api/status", "/api/series", "/api/plan")


def paused_canary(spec: dict[str, Any]) -> dict[str, Any]:
    steps = [{"set_weight": 25}, {"pause": {}}, {"set_weight": 100}]
    canary = {**spec["strategy"]["canary"], "steps": steps}
    return {**spec, "strategy": {"canary": canary}}


def timed(http: httpx.Client, path: str, n: int) -> dict[str, float]:
    took, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        answer = http.get(path)
        took.append(time.perf_counter() - started)
        answer.raise_for_status()
        size = len(answer.content)
    took.sort()
    return {
        "median_ms": statistics.median(took) * 1000,
        "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1000,
        "bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="of each read")
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zerodown-bench-dashboard-"))
    shutil.copy(APP, root / "app.py")
    port = free_port()
    spec = paused_canary(demo_spec(port))
    (root / "zerodown.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    paths = Paths.for_spec(root / "zerodown.yaml")
    page = sum(f.stat().st_size for f in WEB.iterdir() if f.is_file())
    start_controller(paths)
    try:
        with Client(paths) as client:
            client.post("/api/deploy", {"version": "v1", "spec": spec, "who": "bench"})
            wait_status(client, lambda s: s["stable"] == "v1", what="v1")
            client.post("/api/deploy", {"version": "v2", "spec": spec, "who": "bench"})
            wait_status(
                client, lambda s: s["rollout"]["phase"] == "paused", what="the canary's pause"
            )
        headers = {"Authorization": f"Bearer {paths.token()}"}
        with (
            LoadGenerator(f"http://127.0.0.1:{port}/", rate=300, max_seconds=120),
            httpx.Client(base_url=controller_url(paths) or "", headers=headers) as http,
        ):
            time.sleep(2)  # samples for the charts, a running analysis
            reads = {path: timed(http, path, args.requests) for path in READS}
    finally:
        shut_down(paths, who="bench", timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    print(f"the page: {page / 1024:.0f} KiB (HTML, JS and CSS, uncompressed, fetched once)")
    print(f"{args.requests} requests of each read, a canary paused at 25 % under 300 req/s:")
    for path, r in reads.items():
        print(
            f"  GET {path:<12} {r['bytes'] / 1024:5.1f} KiB, median {r['median_ms']:.1f} ms,"
            f" p99 {r['p99_ms']:.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps({"dashboard": {"page_bytes": page, "reads": reads}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
