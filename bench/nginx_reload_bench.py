"""What nginx's lack of a runtime API costs zerodown: a reload per table change (not part of pytest).

    python bench/nginx_reload_bench.py [--seconds 5] [--rounds 3] [--rate 300]

Starts two sample-app backends and a zerodown-managed nginx (the nginx router driver, as
`zerodown up` runs it), then measures, per round:

1. **reloads per second, back to back**: SIGHUP, wait until the new workers serve and the old
   ones stopped accepting (the driver's own test of a finished reload), again, for `--seconds`;
   once idle and once under `--rate` requests/s of keep-alive load (failed requests counted).
2. **memory during a reload**: PSS and RSS of the master and all its workers, idle, then while
   1, 4 and 8 old generations of workers are kept alive by a slow request each (an old worker
   exits when its last request is done), then after they finished.
3. **coalescing**: 100 table changes at 10 a second (each a different split) through the driver's
   `apply`, under load: how many reloads they cost, and failed requests.

Prints median and spread over `--rounds`. Needs nginx (`apt-get install -y nginx-light`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.loadgen import LoadGenerator
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.nginx.driver import NginxRouter
from zerodown.routers.nginx.process import find_binary
from zerodown.spec.model import Spec

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def start_backend(version: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(APP), str(port), version],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit(f"backend {version} did not start") from None
            time.sleep(0.05)


def split(generation: int, weight: int, v1: str, v2: str) -> RouteTable:
    return RouteTable(
        generation=generation,
        pools=(
            Pool("v2", weight, (Backend(v2, "v2-0"),)),
            Pool("v1", 100 - weight, (Backend(v1, "v1-0"),)),
        ),
    )


def memory(router: NginxRouter) -> tuple[float, float, int]:
    """(PSS MB, RSS MB, processes) of nginx's master and all its workers."""
    master = router.process.pid()
    assert master is not None
    workers = router.process.workers(master)
    pss = rss = 0
    pids = [master, *workers.serving, *workers.draining]
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return pss / 1024, rss / 1024, len(pids)


async def back_to_back(router: NginxRouter, seconds: float) -> float:
    master = router.process.pid()
    assert master is not None
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        await router.process.reload(master)
        count += 1
    return count / (time.monotonic() - started)


async def held_generations(router: NginxRouter, url: str, generations: int) -> tuple[float, ...]:
    """Memory while `generations` old generations each finish a 3 s request."""
    master = router.process.pid()
    assert master is not None
    slow = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(generations):
            for _ in range(4):  # enough to reach every worker of the generation
                slow.append(asyncio.create_task(client.get(url + "/slow?ms=3000")))
            await asyncio.sleep(0.1)
            await router.process.reload(master)
        pss, rss, procs = memory(router)
        await asyncio.gather(*slow)
    return pss, rss, float(procs)


async def coalesced(router: NginxRouter, v1: str, v2: str, first: int) -> tuple[int, int]:
    reloads = router.reloads
    started = time.monotonic()
    applies = []
    for n in range(100):
        applies.append(asyncio.create_task(router.apply(split(first + n, (n * 7) % 101, v1, v2))))
        await asyncio.sleep(max(0.0, started + (n + 1) / 10 - time.monotonic()))
    await asyncio.gather(*applies)
    return router.reloads - reloads, first + 100


def spread(values: list[float], fmt: str = ".1f") -> str:
    return f"{statistics.median(values):{fmt}} (min {min(values):{fmt}}, max {max(values):{fmt}})"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=5, help="seconds of back-to-back reloads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=float, default=300, help="requests/s of the load")
    args = p.parse_args()
    binary = find_binary()
    (p1, v1), (p2, v2) = start_backend("v1"), start_backend("v2")
    with tempfile.TemporaryDirectory(prefix="zerodown-nginx-bench-") as tmp:
        (Path(tmp) / "zerodown.yaml").write_text("service: bench\n")
        paths = Paths.for_spec(Path(tmp) / "zerodown.yaml")
        paths.ensure()
        listen = f"127.0.0.1:{free_port()}"
        spec = Spec.model_validate(
            {"service": "bench", "run": {"command": ["true"]}, "router": {"listen": listen}}
        )
        router = NginxRouter(paths=paths, spec=spec, binary=binary)
        url = f"http://{listen}"
        results: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            results.setdefault(name, []).append(value)

        try:
            await router.start()
            generation = 1
            await router.apply(split(generation, 50, v1, v2))
            for n in range(args.rounds):
                add("reloads/s idle", await back_to_back(router, args.seconds))
                with LoadGenerator(url + "/", rate=args.rate, max_seconds=60) as load:
                    add("reloads/s under load", await back_to_back(router, args.seconds))
                add("failed under load", len(load.report.failed))
                add("requests under load", load.report.total)
                add("client retries under load", load.report.retried)
                await asyncio.sleep(1)  # the last old workers go
                pss, rss, procs = memory(router)
                add("idle PSS MB", pss)
                add("idle RSS MB", rss)
                add("idle processes", procs)
                for held in (1, 4, 8):
                    pss, rss, procs = await held_generations(router, url, held)
                    add(f"{held} old generations PSS MB", pss)
                    add(f"{held} old generations RSS MB", rss)
                    add(f"{held} old generations processes", procs)
                await asyncio.sleep(1)
                add("after PSS MB", memory(router)[0])
                with LoadGenerator(url + "/", rate=args.rate, max_seconds=60) as load:
                    reloads, generation = await coalesced(router, v1, v2, generation + 1)
                add("reloads for 100 changes in 10 s", reloads)
                add("failed during the 100 changes", len(load.report.failed))
                add("client retries during the 100 changes", load.report.retried)
                print(f"round {n + 1} done", file=sys.stderr)
        finally:
            await router.stop(grace=5)
            await router.aclose()
            for proc in (p1, p2):
                proc.kill()
                proc.wait()
    print(
        f"nginx reload bench, {args.rounds} rounds, {args.seconds:g} s of reloads,"
        f" load {args.rate:g} req/s"
    )
    for name, values in results.items():
        print(f"  {name:40} {spread(values)}")


if __name__ == "__main__":
    asyncio.run(main())
