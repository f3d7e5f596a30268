"""Throughput and p99 through a zerodown-managed nginx beside a hand-written nginx (not pytest).

    python bench/nginx_bench.py [--duration 10] [--connections 50] [--rounds 3]

Starts, all on 127.0.0.1: a fast backend (nginx, one worker, static 200 on two ports: the two
"releases"), then two nginx reverse proxies in front of it, in turn, each round:

- **hand-written**: the configuration a person would write for a 90/10 split: one upstream with
  both servers weighted 9 and 1, `keepalive 256`, HTTP/1.1 to the backend, no access log;
- **by hand, same headers**: the same, also passing X-Forwarded-Proto, as zerodown's routers do;
- **by hand, same, logged**: the same, with nginx's standard access log (`combined`, buffered as
  zerodown's is), what production configurations keep on at all times;
- **zerodown, at rest**: nginx as the nginx router driver runs it (`zerodown up` with
  `router.kind: nginx`) for one release (v1), nobody reading samples: what runs day to day, with
  the per-request log off (accesslog.LogSwitch);
- **zerodown, analysis**: the same driver with the route table v1 90 / v2 10 (a canary) and a
  reader in this process asking for the canary's samples every second, as the analysis does:
  zerodown's rendered configuration and its per-request log, written to the log file the
  driver's collector tails (and rotates) in this process, as the controller would, with its
  sampler (a release above 1,000 requests a second logged one request in a weight; the reload
  that sets the weights comes in this case's longer warm-up).

All with the same number of workers (`worker_processes auto`). wrk (keep-alive, 1 thread,
`--connections`) against each; prints requests/s, p50, p99 and the CPU time the proxy's master
and workers spent per request (/proc/PID/stat) per case per round, the medians and
the per-round ratios (zerodown at rest and during analysis to hand-written; at rest to the same
headers; during analysis to the same headers logged); then the responses wrk got from the
analysed nginx beside the requests the collector's lines stand for (the estimate), and wrk's
read errors in the analysed rounds (a reload inside a round: see `wrk`). Needs nginx and wrk
(`apt-get install -y nginx-light wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import children, cpu_seconds, round_ratios
from router_bench import _ms  # wrk's latency units, read as router_bench reads them

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.nginx.driver import NginxRouter
from zerodown.routers.nginx.process import find_binary
from zerodown.spec.model import Spec

BACKEND_CONF = """
worker_processes 1;
error_log {dir}/backend-error.log warn;
pid {dir}/backend.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{port1} backlog=4096;
    listen 127.0.0.1:{port2} backlog=4096;
    location / {{ default_type text/plain; return 200 "hello from the backend\\n"; }}
  }}
}}
"""

HAND_CONF = """
worker_processes auto;
error_log {dir}/hand-error.log warn;
pid {dir}/hand.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream shop {{
    server 127.0.0.1:{port1} weight=9;
    server 127.0.0.1:{port2} weight=1;
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://shop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""

SAME_CONF = (
    HAND_CONF.replace(
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n",
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "      proxy_set_header X-Forwarded-Proto $scheme;\n",
    )
    .replace("hand-error.log", "same-error.log")
    .replace("hand.pid", "same.pid")
)
"""The hand-written configuration passing the app what zerodown's routers pass it: also
X-Forwarded-Proto."""

LOGGED_CONF = (
    SAME_CONF.replace(
        "  access_log off;\n",
        "  access_log {dir}/logged-access.log combined buffer=64k flush=250ms;\n",
    )
    .replace("same-error.log", "logged-error.log")
    .replace("same.pid", "logged.pid")
)
"""And nginx's standard per-request log (`combined`), buffered as zerodown's is: what production
configurations keep on at all times."""


async def wrk(
    url: str, *, duration: int, connections: int, strict: bool = True
) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, responses, read errors); run off the event loop so the
    log collector keeps up. A non-2xx response or a socket error ends the bench, but for read
    errors when not `strict`: a reload's old workers close their keep-alive connections, and
    wrk counts a request it sent on one as an error where a browser-like client sends it again
    (docs/router.md)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("`wrk` is missing: apt-get install -y wrk")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out = (await proc.communicate())[0].decode()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    reads = re.search(r"Socket errors: connect 0, read (\d+), write 0, timeout 0", out)
    if errors and (strict or not reads):
        raise SystemExit(f"{url}: {errors.group(0)}\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, total, int(reads.group(1)) if reads else 0


def nginx(binary: str, directory: Path, name: str, text: str) -> subprocess.Popen[bytes]:
    """An nginx in a session of its own, as the driver starts its nginx (and as a service
    manager would): with the scheduler's autogroups (Linux's default on desktops and many
    servers) a session shares CPU as one group, so a proxy in the same session as wrk would
    get an advantage the other has not."""
    conf = directory / f"{name}.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [
            binary,
            "-p",
            str(directory),
            "-c",
            str(conf),
            "-e",
            str(directory / f"{name}.err"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(0.3)
    if proc.poll() is not None:
        raise SystemExit(f"{name} nginx did not start: {(directory / f'{name}.err').read_text()}")
    return proc


AT_REST, ANALYSIS = "zerodown, at rest", "zerodown, analysis"
HAND, SAME, SAME_LOGGED = "hand-written", "by hand, same headers", "by hand, same, logged"


async def read_samples(router: NginxRouter) -> None:
    """What the analysis does while a canary runs: ask for the recent samples every second."""
    while True:
        await router.samples("v2", time.time() - 1)
        await asyncio.sleep(1)


async def settled(router: NginxRouter) -> int:
    """The lines the collector counted, once the last buffered ones are in (none new for 1 s:
    nginx writes its buffer within 250 ms)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
        now = router.access.received
        if now != last:
            last, since = now, time.monotonic()
        await asyncio.sleep(0.1)
    return last


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    binary = find_binary()
    results: dict[str, list[tuple[float, float, float]]] = {
        case: [] for case in (HAND, SAME, SAME_LOGGED, AT_REST, ANALYSIS)
    }
    cpu: dict[str, list[float]] = {case: [] for case in results}  # µs of nginx CPU per request
    with tempfile.TemporaryDirectory(prefix="zerodown-nginx-bench-") as tmp:
        d = Path(tmp)
        port1, port2, zd_port, rest_port = (free_port() for _ in range(4))
        backend = nginx(binary, d, "backend", BACKEND_CONF.format(dir=d, port1=port1, port2=port2))
        hand_ports = {case: free_port() for case in (HAND, SAME, SAME_LOGGED)}
        by_hand = {
            case: nginx(
                binary,
                d,
                name,
                conf.format(dir=d, port1=port1, port2=port2, port=hand_ports[case]),
            )
            for case, name, conf in (
                (HAND, "hand", HAND_CONF),
                (SAME, "same", SAME_CONF),
                (SAME_LOGGED, "logged", LOGGED_CONF),
            )
        }
        (d / "zerodown.yaml").write_text("service: shop\n")
        paths = Paths.for_spec(d / "zerodown.yaml")
        paths.ensure()
        spec = Spec.model_validate(
            {
                "service": "shop",
                "run": {"command": ["true"]},
                "router": {"kind": "nginx", "listen": f"127.0.0.1:{zd_port}"},
            }
        )
        router = NginxRouter(paths=paths, spec=spec, binary=binary)
        # The same service at rest: one release, nobody reading.
        (d / "rest").mkdir()
        (d / "rest" / "zerodown.yaml").write_text("service: shop\n")
        rest_paths = Paths.for_spec(d / "rest" / "zerodown.yaml")
        rest_paths.ensure()
        rest_spec = spec.model_copy(
            update={"router": spec.router.model_copy(update={"listen": f"127.0.0.1:{rest_port}"})}
        )
        rest = NginxRouter(paths=rest_paths, spec=rest_spec, binary=binary)
        v1 = Backend(f"127.0.0.1:{port1}", "v1-0")
        table = RouteTable(
            generation=1,
            pools=(Pool("v1", 90, (v1,)), Pool("v2", 10, (Backend(f"127.0.0.1:{port2}", "v2-0"),))),
        )
        reader: asyncio.Task[None] | None = None
        try:
            await router.start()
            await router.apply(table)
            await rest.start()
            await rest.apply(RouteTable(generation=1, pools=(Pool("v1", 100, (v1,)),)))
            reader = asyncio.create_task(read_samples(router))
            urls = {case: f"http://127.0.0.1:{port}/" for case, port in hand_ports.items()}
            urls |= {
                AT_REST: f"http://127.0.0.1:{rest_port}/",
                ANALYSIS: f"http://127.0.0.1:{zd_port}/",
            }
            masters = {case: proc.pid for case, proc in by_hand.items()}
            masters |= {AT_REST: rest.process.pid(), ANALYSIS: router.process.pid()}

            def nginx_cpu(case: str) -> float:
                """CPU seconds of the proxy's master and workers so far (steadier than req/s on a
                busy machine); workers a reload left are gone by the measured runs."""
                master = masters[case]
                assert master is not None
                return sum(cpu_seconds(pid) for pid in [master, *children(master)])

            answered = 0  # responses wrk got from the analysed nginx
            closed = 0  # wrk's read errors there during the rounds (a reload: see wrk())
            for case, url in urls.items():
                # The analysed nginx longer: its sampler looks after a second of load and sets
                # the busy release's weight (a reload, which wrk, a strict client, would count
                # as read errors on the keep-alive connections the old workers close).
                warm = await wrk(
                    url,
                    duration=5 if case == ANALYSIS else 1,
                    connections=args.connections,
                    strict=False,
                )
                answered += warm[3] if case == ANALYSIS else 0
            print(f"warmed up: reloads {router.reloads}, weights {router.sampler.weights}")
            for n in range(args.rounds):
                first = n % len(urls)  # each case first in turn
                order = list(urls)[first:] + list(urls)[:first]
                for case in order:
                    before, reloads = nginx_cpu(case), router.reloads
                    *r, total, reads = await wrk(
                        urls[case],
                        duration=args.duration,
                        connections=args.connections,
                        strict=case != ANALYSIS,
                    )
                    if case == ANALYSIS:
                        answered += total
                        closed += reads
                    results[case].append((r[0], r[1], r[2]))
                    cpu[case].append((nginx_cpu(case) - before) / (r[0] * args.duration) * 1e6)
                    print(
                        f"round {n + 1} {case:21} {r[0]:9,.0f} req/s  p50 {r[1]:.2f} ms"
                        f"  p99 {r[2]:.2f} ms  nginx CPU {cpu[case][-1]:.1f} µs/request"
                        + (
                            f"  ({router.reloads - reloads} reloads, {reads} read errors,"
                            f" weights {router.sampler.weights})"
                            if case == ANALYSIS
                            else ""
                        ),
                        file=sys.stderr,
                    )
            await settled(router)
            stats = await router.stats()
            ok = sum(s.requests - s.responses_4xx - s.responses_5xx for s in stats.values())
            cut = sum(s.responses_4xx for s in stats.values())
            lines = router.access.received
            weights = dict(router.sampler.weights)
            rest_logged = rest.access.received
            tail = router.access.tail
            rotations = tail.rotations if tail is not None else 0
            switches = (rest.log_switch.on, router.log_switch.on, rest.reloads, router.reloads)
        finally:
            if reader is not None:
                reader.cancel()
            for driver in (router, rest):
                await driver.stop(grace=5)
                await driver.aclose()
            for proc in (*by_hand.values(), backend):
                proc.terminate()
                proc.wait()
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds (median, min-max)"
    )
    med = {}
    for case, rows in results.items():
        rps, p50, p99 = (sorted(col) for col in zip(*rows, strict=True))
        med[case] = (statistics.median(rps), statistics.median(p99))
        print(
            f"  {case:21} {statistics.median(rps):9,.0f} req/s ({rps[0]:,.0f}-{rps[-1]:,.0f})"
            f"  p50 {statistics.median(p50):.2f} ms"
            f"  p99 {statistics.median(p99):.2f} ms ({p99[0]:.2f}-{p99[-1]:.2f})"
            f"  nginx CPU {statistics.median(cpu[case]):.1f} µs/request"
            f" ({min(cpu[case]):.1f}-{max(cpu[case]):.1f})"
        )
    for case, base in ((AT_REST, HAND), (ANALYSIS, HAND), (AT_REST, SAME), (ANALYSIS, SAME_LOGGED)):
        rps_ratio, p99_ratio = round_ratios(results[case], results[base])
        print(
            f"  {case} / {base}, per round: req/s {statistics.median(rps_ratio):.2f}x"
            f" ({rps_ratio[0]:.2f}-{rps_ratio[-1]:.2f}), p99 {statistics.median(p99_ratio):.2f}x"
            f" ({p99_ratio[0]:.2f}-{p99_ratio[-1]:.2f}); of the medians: req/s"
            f" {med[case][0] / med[base][0]:.2f}x,"
            f" p99 {med[case][1] / med[base][1]:.2f}x"
        )
    print(
        f"  log on (at rest, analysis), reloads (at rest, analysis): {switches};"
        f" lines at rest: {rest_logged:,}; analysis: wrk got {answered:,} responses; the"
        f" collector read {lines:,} lines (sampling weights at the end: {weights or 'none'}),"
        f" standing for {ok:,} requests with a 2xx ({(ok - answered) / answered:+.2%}) and"
        f" {cut:,} with a 4xx (requests wrk cut at its end: 499); the log file rotated"
        f" {rotations} times; {closed} read errors in the analysed rounds (wrk's requests on"
        f" keep-alive connections a reload closed)"
    )


if __name__ == "__main__":
    asyncio.run(main())
