"""Throughput and latency of zerodown's router beside HAProxy and nginx (not part of pytest).

    python bench/router_bench.py [--duration 10] [--connections 50] [--rounds 2] [--request unique]
    python bench/router_bench.py --slowloris 2000 [--addresses 64] [--header-bytes 16000]
    python bench/router_bench.py --python-cost 20000
    python bench/router_bench.py --instructions 2000 [--request wrk]
    python bench/router_bench.py --workers 2 [--duration 10] [--connections 50] [--rounds 5]

Starts, all on 127.0.0.1: one fast backend (nginx, one worker, static 200), then zerodown's router,
HAProxy and nginx as reverse proxies in front of it with equivalent settings (one worker/thread,
keep-alive to clients and to the backend), and runs wrk against the backend directly and through
each proxy. The cases take turns within each round (so the router and HAProxy meet the same
machine load), and the figures are the median and the spread (min-max) over `--rounds`, with
the router/HAProxy ratios computed per round.

Needs the Debian packages wrk, haproxy and nginx (`apt-get install -y wrk haproxy nginx`).

`--slowloris N` measures memory instead (needs none of them): the router's RSS before, while N
clients spread over `--addresses` source addresses (127.0.0.2, ...) hold request heads of
`--header-bytes` each without finishing them, and after they leave.

`--python-cost N` times the router's own Python code per proxied request (best of 5 x N), with
a browser-like keep-alive request and a small response driven through fake transports: no
sockets, no event loop work, so it moves little when the machine is busy.

`--instructions N` counts instead of timing: the same N requests run under valgrind's callgrind,
which is switched on only around them, and the machine instructions per request are printed (the
same on a busy machine as on an idle one: the measure to compare two versions of the hot path).
It calls gc.freeze() first, as the router does once started. `--request wrk` sends wrk's request
(one header) instead of the browser-like one; both repeat byte for byte, so after the first one
the router's parser memo (dataplane._PARSED, upstream._PARSED) serves every head. `--request
unique` puts a request id in every request (target, cookie, a header) and response (a header),
as real traffic often does: no head repeats, the parser reads each. Needs valgrind
(`apt-get install -y valgrind`).

In the wrk mode, `--request unique` has wrk give every request its own target and cookie (a Lua
script) and the backend stamp every response with nginx's `$request_id`: the router's parser memo
never hits. Without it wrk repeats one request byte for byte.

`--workers N` compares the router with one worker and with N (`router: {workers: N}`: N
processes, each with its own SO_REUSEPORT socket on the port, as the driver starts them), in
turns within each round, behind the same backend and wrk; it prints each worker's share of the
requests too (the kernel spreads connections, not requests). Needs nginx and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.net import free_port
from zerodown.routers.proxy.client import router_command

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
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain;{stamp} return 200 "hello from the backend\\n"; }}
  }}
}}
"""

NGINX_PROXY_CONF = """
worker_processes 1;
error_log {dir}/proxy-error.log warn;
pid {dir}/proxy.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""

HAPROXY_CONF = """
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{backend}
"""


@dataclass(frozen=True)
class Result:
    case: str
    rps: float
    p50_ms: float
    p99_ms: float


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def need(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if path is None:
        raise SystemExit(f"`{binary}` is missing: apt-get install -y wrk haproxy nginx")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


# `--request unique` in the wrk mode: every request gets its own target and cookie (and the
# backend stamps every response with nginx's $request_id), so no head repeats.
UNIQUE_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/items?id=" .. n, {["Cookie"] = "session=" .. n})
end
"""


def run_wrk(
    url: str, *, duration: int, connections: int, script: Path | None = None
) -> tuple[float, float, float]:
    lua = ["-s", str(script)] if script else []
    out = subprocess.run(
        [need("wrk"), "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *lua, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx responses:\n{out}")
    return rps, p50, p99


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds `pid` has used (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


@contextlib.contextmanager
def process(
    argv: list[str], log: Path, *, own_session: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running while the block runs (SIGTERM, then SIGKILL, after it); `own_session`
    starts it in a session of its own, as the drivers start a proxy (with the scheduler's
    autogroups, a proxy in wrk's session has an advantage: nginx_bench.py)."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=own_session
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(35)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}")


def slowloris(clients: int, addresses: int, header_bytes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="zerodown-slowloris-") as tmp:
        d = Path(tmp)
        port = free_port()
        admin = d / "router.sock"
        argv = router_command(
            listen=f"127.0.0.1:{port}",
            preview_listen=None,
            admin_socket=str(admin),
            state_file=str(d / "router-state.json"),
        )
        with (
            process(argv, d / "router.log") as router,
            httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), trust_env=False) as c,
        ):
            wait_port(port)

            def clients_json() -> dict[str, int]:
                return c.get("http://router/stats").json()["clients"]  # type: ignore[no-any-return]

            for _ in range(300):  # warm up (no table: 503s)
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                    s.recv(4096)
            before = rss_mb(router.pid)
            socks = []
            for i in range(clients):
                s = socket.socket()
                s.bind((f"127.0.0.{2 + i % addresses}", 0))
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
                socks.append(s)
            for k in range(0, header_bytes, 1000):
                for i, s in enumerate(socks):
                    with contextlib.suppress(OSError):  # refused: too many from its address
                        s.sendall(b"X-%d-%d: %s\r\n" % (k, i, b"v" * 990))
            time.sleep(1)
            peak, held = rss_mb(router.pid), clients_json()["sending_headers"]
            for s in socks:
                s.close()
            while clients_json()["connections"]:
                time.sleep(0.1)
            time.sleep(2.5)  # the sweeper gives memory back within a second or two
            after = rss_mb(router.pid)
    print(
        f"{clients} slow clients from {addresses} addresses, {header_bytes} header bytes each: "
        f"router RSS {before:.1f} MB before, {peak:.1f} MB with {held} heads held, "
        f"{after:.1f} MB after they left"
    )


class _FakeTransport:
    """Just enough of an asyncio transport for the router's protocols."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


BROWSER_REQUEST = (
    b"GET /api/items?id=42 HTTP/1.1\r\nHost: example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Cookie: session=abcdef0123456789\r\nConnection: keep-alive\r\n\r\n"
)
SMALL_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 01 Dec 2026 11:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\n"
    b"hello from the backend\n"
)


WRK_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def _exchanges(kind: str, total: int) -> list[tuple[bytes, bytes]]:
    """`total` (request, response) pairs, made before the clock or the counter starts. `wrk` and
    `browser` repeat one pair (so the router's parser memo serves every head after the first);
    `unique` is the browser-like pair with a request id in the target and the cookie and a
    response header, so that no head ever repeats (the memo never hits: the parser reads all)."""
    if kind == "wrk":
        return [(WRK_REQUEST, SMALL_RESPONSE)] * total
    if kind == "browser":
        return [(BROWSER_REQUEST, SMALL_RESPONSE)] * total
    rest = BROWSER_REQUEST.split(b"\r\n", 1)[1]
    response_end = SMALL_RESPONSE.index(b"\r\n\r\n")
    return [
        (
            b"GET /api/items?id=%d HTTP/1.1\r\n%sX-Request-Id: %016x\r\n\r\n"
            % (i, rest[:-2].replace(b"abcdef", b"%06d" % i), i),
            SMALL_RESPONSE[:response_end]
            + b"\r\nX-Request-Id: %016x" % i
            + SMALL_RESPONSE[response_end:],
        )
        for i in range(total)
    ]


async def _python_cost(n: int, kind: str = "browser", *, count: bool = False) -> float:
    from zerodown.routers.proxy.dataplane import ClientConn
    from zerodown.routers.proxy.server import Router
    from zerodown.routers.proxy.upstream import UpstreamConn

    router = Router(asyncio.get_running_loop())
    router.install(RouteTable(1, (Pool("bench", 100, (Backend("127.0.0.1:9", "fake"),)),)))
    backend = router.backends["127.0.0.1:9"]
    upstream = UpstreamConn(backend)
    upstream.connection_made(_FakeTransport())  # type: ignore[arg-type]
    backend.put_idle(upstream, router.now())
    client = ClientConn(router, False)
    client.connection_made(_FakeTransport())  # type: ignore[arg-type]

    exchanges = iter(_exchanges(kind, 2000 + (n if count else 6 * n)))

    def proxy(times: int) -> None:
        for request, response in itertools.islice(exchanges, times):
            client.data_received(request)
            upstream.data_received(response)

    proxy(2000)  # warm up
    best = float("inf")
    if count:  # under callgrind (--instructions): instrumented around these n requests only
        gc.collect()
        gc.freeze()

        def control(*argv: str) -> None:
            subprocess.run(
                ["callgrind_control", *argv, str(os.getpid())], check=True, capture_output=True
            )

        # First what switching on and off costs alone, then the same around the requests: the
        # parent subtracts the one from the other.
        control("--instr=on")
        control("--instr=off")
        control("--dump=switching")
        control("--instr=on")
        proxy(n)
        control("--instr=off")
        control("--dump=requests")
    for _ in range(0 if count else 5):
        t = time.process_time()
        proxy(n)
        best = min(best, (time.process_time() - t) / n)
    if client.active is not None or client.closed:
        raise SystemExit("the fake exchange did not complete: the bench is out of date")
    return best


def instructions(n: int, request: str) -> None:
    """Run `--python-cost` once under callgrind and print the instructions per request."""
    with tempfile.TemporaryDirectory(prefix="zerodown-callgrind-") as tmp:
        argv = [
            need("valgrind"),
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            __file__,
            "--count-under-callgrind",
            str(n),
            "--request",
            request,
        ]
        subprocess.run(argv, capture_output=True, check=True)
        totals = {}
        for dump in Path(tmp).glob("callgrind.out.*"):
            text = dump.read_text(errors="replace")
            trigger = re.search(r"^desc: Trigger: dump (\w+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if trigger and total:
                totals[trigger.group(1)] = int(total.group(1))
    if set(totals) != {"switching", "requests"}:
        raise SystemExit(f"callgrind dumps not found: {totals}")
    per_request = (totals["requests"] - totals["switching"]) / n
    print(
        f"router code per proxied request ({request} request, gc frozen): {per_request:,.0f} "
        f"instructions (callgrind, {n} requests)"
    )


def spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}-{format(max(values), fmt)})"
    )


def print_cases(names: list[str], rounds: list[dict[str, Result]]) -> None:
    """A markdown table: each case's requests/s, p50 and p99 over the rounds, median (min-max)."""
    print("| case | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for name in names:
        rs = [r[name] for r in rounds]
        print(
            f"| {name} | {spread([r.rps for r in rs], ',.0f')} | "
            f"{spread([r.p50_ms for r in rs], '.2f')} | {spread([r.p99_ms for r in rs], '.2f')} |"
        )


def admin_client(admin: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), trust_env=False)


def router_requests(admin: Path) -> int:
    with admin_client(admin) as c:
        releases = c.get("http://router/stats").json()["releases"]
    return sum(int(r["requests"]) for r in releases.values())


def worker_case(n: int) -> str:
    return f"zerodown router, {n} worker{'s' if n > 1 else ''}"


def workers_bench(count: int, duration: int, connections: int, rounds_wanted: int) -> None:
    """The router with one worker against `count` workers sharing a port (SO_REUSEPORT)."""
    nginx = need("nginx")
    need("wrk")
    with (
        tempfile.TemporaryDirectory(prefix="zerodown-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        backend = free_port()
        (d / "backend.conf").write_text(BACKEND_CONF.format(dir=d, port=backend))
        nginx_argv = [nginx, "-p", str(d), "-g", "daemon off;", "-c", str(d / "backend.conf")]
        stack.enter_context(process(nginx_argv, d / "backend.log"))
        table = RouteTable(1, (Pool("bench", 100, (Backend(f"127.0.0.1:{backend}", "nginx"),)),))
        admins: dict[int, list[Path]] = {}
        pids: dict[int, list[int]] = {}
        ports: dict[int, int] = {}
        for n in (1, count):
            port = ports[n] = free_port()
            admins[n], pids[n] = [], []
            for w in range(n):
                # As the driver does: each worker gets a socket of its own in the port's group.
                sock = socket.create_server(("127.0.0.1", port), backlog=2048, reuse_port=n > 1)
                stack.callback(sock.close)
                admin = d / f"router-{n}-{w}.sock"
                argv = router_command(
                    listen=f"127.0.0.1:{port}",
                    preview_listen=None,
                    admin_socket=str(admin),
                    state_file=str(d / f"router-{n}-{w}.json"),
                    listen_fd=sock.fileno(),
                )
                with open(d / f"router-{n}-{w}.log", "wb") as log:
                    proc = subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        pass_fds=(sock.fileno(),),
                    )
                stack.callback(proc.wait, 35)
                stack.callback(proc.send_signal, signal.SIGTERM)
                admins[n].append(admin)
                pids[n].append(proc.pid)
        wait_port(backend)
        for n, paths in admins.items():
            wait_port(ports[n])
            for admin in paths:
                for _ in range(200):
                    if admin.exists():
                        break
                    time.sleep(0.05)
                with admin_client(admin) as c:
                    c.put("http://router/routes", json=table.to_json()).raise_for_status()
        cases = [("backend directly", backend), *((worker_case(n), ports[n]) for n in ports)]
        for _name, port in cases:
            run_wrk(f"http://127.0.0.1:{port}/", duration=1, connections=connections)
        rounds: list[dict[str, Result]] = []
        shares: list[list[float]] = []  # per round: each of the `count` workers' share
        cpu_us: dict[int, list[float]] = {1: [], count: []}  # all workers' CPU per request
        for r in range(rounds_wanted):
            this: dict[str, Result] = {}
            for name, port in cases:
                before = [router_requests(a) for a in admins[count]]
                workers = next((n for n in ports if ports[n] == port), None)
                cpu_before = sum(sum(cpu_seconds(pid)) for pid in pids.get(workers or 0, ()))
                result = run_wrk(
                    f"http://127.0.0.1:{port}/", duration=duration, connections=connections
                )
                if workers is not None:
                    cpu = sum(sum(cpu_seconds(pid)) for pid in pids[workers]) - cpu_before
                    cpu_us[workers].append(cpu / (result[0] * duration) * 1e6)
                if port == ports[count]:
                    done = [
                        router_requests(a) - b for a, b in zip(admins[count], before, strict=True)
                    ]
                    shares.append([n / max(1, sum(done)) for n in done])
                this[name] = Result(name, *result)
                print(f"  round {r + 1} {name}: {result[0]:,.0f} req/s", file=sys.stderr)
            rounds.append(this)

    print(
        f"\nwrk -t1 -c{connections} -d{duration}s, {rounds_wanted} rounds (cases in turn), "
        f"keep-alive on both sides, {os.cpu_count()} cores shared by wrk, the backend and the "
        "router; median (min-max)\n"
    )
    print_cases([name for name, _port in cases], rounds)
    ratio = [r[worker_case(count)].rps / r[worker_case(1)].rps for r in rounds]
    print(f"\n{count} workers / 1 worker per round: {spread(ratio, '.2f')}x requests/s")
    for w in range(count):
        print(
            f"worker {w}'s share of the requests: {spread([s[w] * 100 for s in shares], '.0f')} %"
        )
    for n, values in cpu_us.items():
        print(f"router CPU per request, {worker_case(n)} (all): {spread(values, '.1f')} µs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every case once")
    p.add_argument("--slowloris", type=int, metavar="N", help="measure memory under N slow clients")
    p.add_argument("--addresses", type=int, default=64, help="source addresses of slow clients")
    p.add_argument("--header-bytes", type=int, default=16000, help="header bytes per slow client")
    p.add_argument("--python-cost", type=int, metavar="N", help="time N in-process requests")
    p.add_argument("--instructions", type=int, metavar="N", help="count N under callgrind")
    p.add_argument("--request", choices=("browser", "wrk", "unique"), default="browser")
    p.add_argument("--count-under-callgrind", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    p.add_argument("--workers", type=int, metavar="N", help="one router worker against N")
    args = p.parse_args()
    if args.count_under_callgrind:
        asyncio.run(_python_cost(args.count_under_callgrind, args.request, count=True))
        return
    if args.instructions:
        instructions(args.instructions, args.request)
        return
    if args.python_cost:
        cost = asyncio.run(_python_cost(args.python_cost, args.request))
        print(f"router Python code per proxied request: {cost * 1e6:.2f} µs (best of 5 x N)")
        return
    if args.slowloris:
        slowloris(args.slowloris, args.addresses, args.header_bytes)
        return
    if args.workers:
        if args.workers < 2:
            p.error("--workers N compares one worker with N: give 2 or more")
        workers_bench(args.workers, args.duration, args.connections, args.rounds)
        return
    nginx, haproxy = need("nginx"), need("haproxy")
    need("wrk")

    with (
        tempfile.TemporaryDirectory(prefix="zerodown-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        ports = {name: free_port() for name in ("backend", "router", "haproxy", "nginx")}
        unique = args.request == "unique"
        stamp = " add_header X-Request-Id $request_id;" if unique else ""
        (d / "backend.conf").write_text(
            BACKEND_CONF.format(dir=d, port=ports["backend"], stamp=stamp)
        )
        script = d / "unique.lua" if unique else None
        if script:
            script.write_text(UNIQUE_LUA)
        (d / "proxy.conf").write_text(
            NGINX_PROXY_CONF.format(dir=d, port=ports["nginx"], backend=ports["backend"])
        )
        (d / "haproxy.cfg").write_text(
            HAPROXY_CONF.format(port=ports["haproxy"], backend=ports["backend"])
        )
        nginx_argv = [nginx, "-p", str(d), "-g", "daemon off;", "-c"]
        stack.enter_context(process([*nginx_argv, str(d / "backend.conf")], d / "backend.log"))
        stack.enter_context(process([*nginx_argv, str(d / "proxy.conf")], d / "nginx.log"))
        haproxy_proc = stack.enter_context(
            process([haproxy, "-f", str(d / "haproxy.cfg")], d / "haproxy.log")
        )
        admin = d / "router.sock"
        argv = router_command(
            listen=f"127.0.0.1:{ports['router']}",
            preview_listen=None,
            admin_socket=str(admin),
            state_file=str(d / "router-state.json"),
        )
        router = stack.enter_context(process(argv, d / "router.log"))
        for port in ports.values():
            wait_port(port)
        table = RouteTable(
            1, (Pool("bench", 100, (Backend(f"127.0.0.1:{ports['backend']}", "nginx"),)),)
        )
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), trust_env=False) as c:
            c.put("http://router/routes", json=table.to_json()).raise_for_status()

        cases = [
            ("backend directly", ports["backend"]),
            ("zerodown router", ports["router"]),
            ("haproxy", ports["haproxy"]),
            ("nginx proxy", ports["nginx"]),
        ]
        for _name, port in cases:
            run_wrk(
                f"http://127.0.0.1:{port}/",
                duration=1,
                connections=args.connections,
                script=script,
            )
        rounds: list[dict[str, Result]] = []
        cpu_us: list[tuple[float, float]] = []  # the router's user, system CPU per request
        # Router / HAProxy CPU per request, per round: on a busy machine (wrk, the backend and
        # other work share the cores) this says what requests/s alone cannot, how the two
        # would compare each on a core of its own.
        cpu_ratio: list[float] = []
        for n in range(args.rounds):
            this: dict[str, Result] = {}
            for name, port in cases:
                before = cpu_seconds(router.pid)
                haproxy_before = cpu_seconds(haproxy_proc.pid)
                r = run_wrk(
                    f"http://127.0.0.1:{port}/",
                    duration=args.duration,
                    connections=args.connections,
                    script=script,
                )
                if name == "zerodown router":
                    after, requests = cpu_seconds(router.pid), r[0] * args.duration
                    cpu_us.append(
                        (
                            (after[0] - before[0]) / requests * 1e6,
                            (after[1] - before[1]) / requests * 1e6,
                        )
                    )
                if name == "haproxy":
                    after = cpu_seconds(haproxy_proc.pid)
                    haproxy_cpu = sum(after) - sum(haproxy_before)
                    cpu_ratio.append(sum(cpu_us[-1]) / (haproxy_cpu / (r[0] * args.duration) * 1e6))
                this[name] = Result(name, *r)
                print(f"  round {n + 1} {name}: {r[0]:,.0f} req/s", file=sys.stderr, flush=True)
            rounds.append(this)

    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds (cases in turn), "
        "one worker/thread per proxy, keep-alive on both sides; median (min-max)"
        + (", every request and response head unique" if args.request == "unique" else "")
        + "\n"
    )
    print_cases([name for name, _port in cases], rounds)
    print(
        "\nthe router's CPU per proxied request (/proc/PID/stat over its wrk runs): user "
        f"{spread([u for u, _ in cpu_us], '.1f')} µs, system {spread([s for _, s in cpu_us], '.1f')} µs"
    )
    print(
        "the router's CPU per request over HAProxy's (user + system, same round): "
        f"{spread(cpu_ratio, '.2f')}x, so about {spread([1 / c for c in cpu_ratio], '.2f')}x "
        "HAProxy's requests/s with a core each"
    )
    rps = [r["zerodown router"].rps / r["haproxy"].rps for r in rounds]
    p99 = [r["zerodown router"].p99_ms / r["haproxy"].p99_ms for r in rounds]
    print(
        f"\nzerodown/haproxy per round: {spread(rps, '.2f')}x requests/s, "
        f"{spread(p99, '.2f')}x p99 latency"
    )
    if args.json:
        figures = {
            name: {
                "rps": statistics.median(r[name].rps for r in rounds),
                "p99_ms": statistics.median(r[name].p99_ms for r in rounds),
            }
            for name, _port in cases
        }
        figures["ratio"] = {
            "rps": statistics.median(rps),
            "p99": statistics.median(p99),
            "cpu_per_request": statistics.median(cpu_ratio),
        }
        figures["cpu_us"] = {
            "user": statistics.median(u for u, _ in cpu_us),
            "system": statistics.median(s for _, s in cpu_us),
        }
        args.json.write_text(json.dumps({"router": figures}, indent=1))


if __name__ == "__main__":
    main()
