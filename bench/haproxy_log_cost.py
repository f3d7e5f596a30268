"""HAProxy's machine instructions per request: hand-written, and zerodown's configuration with the
per-request log off, on for every request, and on but sampled.

    python bench/haproxy_log_cost.py [--seconds 3] [--rate 30000]

Counts instead of timing, so the figures are the same on a busy machine as on an idle one: each
HAProxy (one thread, `-db`, in front of the same nginx backend) runs under valgrind's callgrind,
switched on only while wrk (1 thread, 10 keep-alive connections, `--seconds`) sends requests; the
instructions counted are divided by the requests the frontend counted (`show stat` req_tot).

The managed configuration is the one `ManagedHaproxy` writes for a canary (v1 90 / v2 10); its
phases are set through the Runtime API as the driver sets them: the log's switch in maintenance
(at rest), up with no sampling (every request a line), and up with the weights `sampling_weight`
gives the canary's releases at `--rate` requests a second (v1 90 %, v2 10 %). A reader streams the ring
(`show events zd_log -w`) while the log is on, as the controller does.

Needs valgrind, wrk, haproxy and nginx (`apt-get install -y valgrind wrk haproxy nginx-light`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from haproxy_bench import HAND_WRITTEN
from nginx_bench import BACKEND_CONF
from router_bench import need, run_wrk, wait_port
from router_bench import process as router_process

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.accesslog import sampling_weight
from zerodown.routers.haproxy.config import LOG_SWITCH, RING
from zerodown.routers.haproxy.driver import ManagedHaproxy
from zerodown.spec.model import Spec


def command(sock: Path, line: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(line.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


def requests(sock: Path, frontend: str) -> int:
    lines = command(sock, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    column = header.index("req_tot")
    for line in lines[1:]:
        fields = line.split(",")
        if fields[:2] == [frontend, "FRONTEND"]:
            return int(fields[column])
    raise SystemExit(f"no frontend {frontend} in show stat")


@contextlib.contextmanager
def ring_reader(sock: Path) -> Iterator[None]:
    """`show events zd_log -w`, read and dropped, as the controller's collector reads it."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(f"show events {RING} -w -n\n".encode())
    stop = threading.Event()

    def read() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                if not s.recv(1 << 20):
                    return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        s.close()


def set_map(sock: Path, path: Path, entries: dict[str, int]) -> None:
    command(sock, f"clear map {path}")
    for key, value in entries.items():
        command(sock, f"add map {path} {key} {value}")


class Counted:
    """A HAProxy under callgrind, instrumented only around what `count` runs."""

    def __init__(self, config: Path, out: Path, sock: Path, frontend: str, port: int) -> None:
        self.config, self.out, self.sock, self.frontend, self.port = (
            config,
            out,
            sock,
            frontend,
            port,
        )
        self.dumps = 0
        self.pid = 0

    def count(self, seconds: int) -> float:
        """Instructions per request over `seconds` of wrk."""
        before = requests(self.sock, self.frontend)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(self.pid)], check=True, capture_output=True
        )
        run_wrk(f"http://127.0.0.1:{self.port}/", duration=seconds, connections=10)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(self.pid)], check=True, capture_output=True
        )
        subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True, capture_output=True)
        self.dumps += 1
        done = requests(self.sock, self.frontend) - before
        dump = Path(f"{self.out}.{self.dumps}")
        deadline = time.monotonic() + 30
        while not dump.exists() or "totals:" not in dump.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"no callgrind dump {dump}")
            time.sleep(0.1)
        match = re.search(r"^totals:\s+(\d+)", dump.read_text(), re.M)
        assert match is not None
        return int(match.group(1)) / max(done, 1)


async def managed_config(d: Path, port: int, v1: Backend, v2: Backend) -> ManagedHaproxy:
    """What the driver writes for a canary: its configuration and maps (HAProxy then stopped)."""
    spec = Spec.model_validate(
        {
            "service": "bench",
            "run": {"command": ["app"]},
            "router": {"kind": "haproxy", "listen": f"127.0.0.1:{port}"},
        }
    )
    paths = Paths.for_spec(d / "managed" / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec)
    await router.start()
    await router.apply(RouteTable(1, (Pool("v1", 90, (v1,)), Pool("v2", 10, (v2,)))))
    await router.reload()  # the servers added at runtime, written into the configuration
    await router.stop(grace=5)
    await router.aclose()
    return router


def one_thread(config: str) -> str:
    return config.replace("global\n", "global\n  nbthread 1\n", 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=3, help="seconds of wrk per phase")
    p.add_argument("--rate", type=float, default=30000, help="requests/s the weights are for")
    p.add_argument("--keep", type=Path, help="copy the callgrind dumps here (callgrind_annotate)")
    args = p.parse_args()
    nginx, haproxy, valgrind = need("nginx"), need("haproxy"), need("valgrind")
    need("wrk")
    weights = {
        "v1": sampling_weight(0.9 * args.rate, 1),
        "v2": sampling_weight(0.1 * args.rate, 1),
    }
    results: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="zerodown-bench-haproxy-cost-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        ports = {name: free_port() for name in ("v1", "v2", "hand", "managed")}
        (d / "backend.conf").write_text(
            BACKEND_CONF.format(dir=d, port1=ports["v1"], port2=ports["v2"])
        )
        stack.enter_context(
            router_process(
                [nginx, "-p", str(d), "-g", "daemon off;", "-c", str(d / "backend.conf")],
                d / "backend.log",
            )
        )
        wait_port(ports["v1"])
        v1 = Backend(f"127.0.0.1:{ports['v1']}", "v1-0")
        v2 = Backend(f"127.0.0.1:{ports['v2']}", "v2-0")
        router = asyncio.run(managed_config(d, ports["managed"], v1, v2))
        files = router.files
        hand_sock = d / "hand.sock"
        hand = HAND_WRITTEN.format(port=ports["hand"], backend=ports["v1"]).replace(
            "global\n", f"global\n  stats socket {hand_sock} mode 600 level admin\n", 1
        )
        (d / "hand.cfg").write_text(one_thread(hand))
        (d / "managed.cfg").write_text(one_thread(files.config.read_text()))
        cases = {
            "hand-written": Counted(d / "hand.cfg", d / "hand.out", hand_sock, "fe", ports["hand"]),
            "managed": Counted(
                d / "managed.cfg",
                d / "managed.out",
                files.admin_socket,
                "zd_main",
                ports["managed"],
            ),
        }
        for case in cases.values():
            proc = stack.enter_context(
                router_process(
                    [
                        valgrind,
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={case.out}",
                        haproxy,
                        "-db",
                        "-f",
                        str(case.config),
                    ],
                    d / f"{case.frontend}.log",
                    own_session=True,
                )
            )
            case.pid = proc.pid
            wait_port(case.port, timeout=60)
        for case in cases.values():  # warm up (uninstrumented)
            run_wrk(f"http://127.0.0.1:{case.port}/", duration=1, connections=10)
        managed, sock = cases["managed"], files.admin_socket
        results["hand-written"] = cases["hand-written"].count(args.seconds)
        command(sock, f"set server {LOG_SWITCH} state maint")
        set_map(sock, files.sampling, {})
        results["managed, log off (at rest)"] = managed.count(args.seconds)
        with ring_reader(sock):
            command(sock, f"set server {LOG_SWITCH} state ready")
            results["managed, log on, every request"] = managed.count(args.seconds)
            set_map(sock, files.sampling, router._sampling_entries(weights))
            results[f"managed, log on, sampled {weights}"] = managed.count(args.seconds)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in d.glob("*.out.*"):
                shutil.copy(dump, args.keep / dump.name)
    base = results["hand-written"]
    print(f"\nHAProxy instructions per request (callgrind, nbthread 1, wrk -c10 {args.seconds}s):")
    for name, value in results.items():
        print(f"  {name:<52} {value:>10,.0f}  {value / base:.3f}x hand-written")


if __name__ == "__main__":
    main()
