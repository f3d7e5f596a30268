"""How long from a response to its sample in the controller, through nginx and HAProxy (not pytest).

    python bench/accesslog_delay.py [--requests 40] [--gap 0.2]

Starts a fast backend (nginx, static 200, as nginx_bench.py) and, in turn, the nginx and the
HAProxy router drivers with a canary table (the per-request log on), then sends `--requests`
single requests `--gap` seconds apart and times each from its response to the moment the
driver's collector has counted it (polled every millisecond). nginx writes its log buffered
(`flush=250ms`) to a file the collector reads every 0.1 s; HAProxy's ring is read through the
Runtime API as lines are written. Prints the median, p90 and max per router; then closes
HAProxy's collector (as when the controller is down) and prints the CPU its worker uses over
`--idle` seconds with nobody reading (a ring forwarding to the controller's socket spun here).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path

from benchkit import cpu_seconds
from nginx_bench import BACKEND_CONF, nginx

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.haproxy import process
from zerodown.routers.haproxy.driver import ManagedHaproxy
from zerodown.routers.nginx.driver import NginxRouter
from zerodown.routers.nginx.process import find_binary
from zerodown.spec.model import Spec


def get(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass


async def delays(
    router: NginxRouter | ManagedHaproxy, port: int, requests: int, gap: float
) -> list[float]:
    out = []
    for _ in range(requests):
        before = router.access.received
        await asyncio.to_thread(get, port)
        answered = time.monotonic()
        while router.access.received == before:
            if time.monotonic() - answered > 5:
                raise SystemExit("a line did not arrive within 5 s")
            await asyncio.sleep(0.001)
        out.append(time.monotonic() - answered)
        await asyncio.sleep(gap)
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--gap", type=float, default=0.2, help="seconds between requests")
    p.add_argument("--idle", type=float, default=5, help="seconds HAProxy runs unread")
    args = p.parse_args()
    binary = find_binary()
    with tempfile.TemporaryDirectory(prefix="zerodown-bench-logdelay-") as tmp:
        d = Path(tmp)
        port1, port2 = free_port(), free_port()
        backend = nginx(binary, d, "backend", BACKEND_CONF.format(dir=d, port1=port1, port2=port2))
        table = RouteTable(
            generation=1,
            pools=(
                Pool("v1", 90, (Backend(f"127.0.0.1:{port1}", "v1-0"),)),
                Pool("v2", 10, (Backend(f"127.0.0.1:{port2}", "v2-0"),)),
            ),
        )
        results = {}
        idle_cpu = float("nan")
        try:
            for kind in ("nginx", "haproxy"):
                (d / kind).mkdir()
                (d / kind / "zerodown.yaml").write_text("service: shop\n")
                paths = Paths.for_spec(d / kind / "zerodown.yaml")
                paths.ensure()
                port = free_port()
                spec = Spec.model_validate(
                    {
                        "service": "shop",
                        "run": {"command": ["true"]},
                        "router": {"kind": kind, "listen": f"127.0.0.1:{port}"},
                    }
                )
                router: NginxRouter | ManagedHaproxy = (
                    NginxRouter(paths=paths, spec=spec, binary=binary)
                    if kind == "nginx"
                    else ManagedHaproxy(paths=paths, spec=spec)
                )
                try:
                    await router.start()
                    await router.apply(table)
                    await delays(router, port, 3, args.gap)  # the session or file is open
                    results[kind] = sorted(await delays(router, port, args.requests, args.gap))
                    if isinstance(router, ManagedHaproxy):
                        router.access.close()  # the controller is gone: nobody reads
                        master = router.pid()
                        assert master is not None
                        workers = process.children(master)
                        before = sum(cpu_seconds(w) for w in workers)
                        await asyncio.sleep(args.idle)
                        idle_cpu = (sum(cpu_seconds(w) for w in workers) - before) / args.idle
                finally:
                    await router.stop(grace=5)
                    await router.aclose()
        finally:
            backend.terminate()
            backend.wait()
    print(f"{args.requests} single requests, {args.gap} s apart: response -> counted")
    for kind, values in results.items():
        p90 = values[int(0.9 * (len(values) - 1))]
        print(
            f"  {kind:8} median {statistics.median(values) * 1000:6.1f} ms"
            f"  p90 {p90 * 1000:6.1f} ms  max {values[-1] * 1000:6.1f} ms"
        )
    print(
        f"HAProxy's worker with nobody reading its log, {args.idle:g} s: {idle_cpu:.1%} of a core"
    )


if __name__ == "__main__":
    asyncio.run(main())
