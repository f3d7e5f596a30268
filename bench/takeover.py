"""Takeover time of a standby controller on one PostgreSQL store, under load.

    python bench/takeover.py [--rounds 10] [--rate 300] [--database postgresql://postgres@127.0.0.1/postgres]

One service (two instances of the demo app behind the built-in router, state on a database made
for the run and dropped after) and two controllers on this machine. Each round starts a fresh
standby, waits until the store lists it and its API answers, then stops the leader and measures, from that moment:

- `lease`: until the store's lease names the standby (PostgreSQL's clock, read every 20 ms);
- `acting`: until the new leader has completed a reconcile pass (its API's last_pass).

Two ways to lose the leader, `--rounds` of each:

- kill -9: the standby sees that the holder, a process of this machine, is gone, and takes the
  lease at once (what a crashed controller on the same machine costs);
- SIGSTOP: the holder still exists, so the standby waits until the lease runs out (LEASE seconds
  after the last renewal): what a lost machine, a partition or a frozen process costs. The paused
  leader is then killed.

Failed requests are counted over all rounds (the router and instances serve throughout). Only
loopback traffic, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import yaml

from zerodown.engine.leadership import LEASE
from zerodown.loadgen import LoadGenerator
from zerodown.net import free_port

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def spec(port: int, database: str) -> dict[str, object]:
    return {
        "service": "shop",
        "instances": 2,
        "run": {"command": [sys.executable, str(APP), "{port}", "{version}"], "drain": "1s"},
        "probes": {"readiness": {"http": "/ready", "period": "500ms"}},
        "router": {"listen": f"127.0.0.1:{port}"},
        "state": {"url": database},
    }


class Service:
    def __init__(self, root: Path, database: str) -> None:
        self.root = root
        self.port = free_port()
        self.file = root / "zerodown.yaml"
        self.file.write_text(yaml.safe_dump(spec(self.port, database)))
        self.database = database
        self.standbys: list[subprocess.Popen[bytes]] = []

    def zd(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(self.file)],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.root,
        )

    def start_controller(self) -> int:
        with open(self.root / ".zerodown" / "logs" / "controllers.log", "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "zerodown.api", "-f", str(self.file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
            )
        self.standbys.append(child)
        return child.pid

    def lease(self) -> tuple[str, list[str], dict[str, str]]:
        """The lease holder, the controllers seen lately, and their URLs (from the store)."""
        with psycopg.connect(self.database, autocommit=True) as db:
            held = db.execute(
                "SELECT holder FROM zerodown.leases WHERE service = 'shop'"
                " AND expires_at > EXTRACT(EPOCH FROM clock_timestamp())"
            ).fetchone()
            seen = db.execute(
                "SELECT id, url FROM zerodown.controllers WHERE service = 'shop'"
                " AND seen_at > EXTRACT(EPOCH FROM clock_timestamp()) - 2"
            ).fetchall()
        return (held[0] if held else "", [i for i, _ in seen], dict(seen))

    def leader_pid(self) -> int:
        return int(json.loads((self.root / ".zerodown" / "controller.json").read_text())["pid"])


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(service: Service, me: str) -> bool:
    """The controller `me` (":pid") is listed by the store and its API answers."""
    url = next((u for i, u in service.lease()[2].items() if i.endswith(me)), "")
    try:
        return bool(url) and httpx.get(url + "/api/status", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def one_round(service: Service, how: str) -> tuple[float, float]:
    leader = service.lease()[0]
    leader_pid = int(leader.rpartition(":")[2])
    assert Path(f"/proc/{leader_pid}").exists(), f"the leader {leader} is gone before the round"
    standby = service.start_controller()
    me = f":{standby}"
    wait(lambda: answers(service, me), 30, "the standby's API")  # up and waiting
    assert service.lease()[0] == leader, "the standby took the lease before the leader was lost"
    lost_at = time.monotonic()
    os.kill(leader_pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    wait(lambda: service.lease()[0].endswith(me), 30, "the takeover")
    lease = time.monotonic() - lost_at

    def passed() -> bool:
        url = service.lease()[2].get(service.lease()[0], "")
        if not url:
            return False  # it claimed the lease before its API listened: the next renewal says
        try:
            state = httpx.get(url + "/api/status", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        last = state["controller"]["last_pass"]
        return last is not None and state["leadership"]["role"] == "leader"

    wait(passed, 30, "the new leader's first pass")
    acting = time.monotonic() - lost_at
    if how == "stop":
        os.kill(leader_pid, signal.SIGKILL)  # a stopped process takes SIGKILL too
    return lease, acting


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"zd_takeover_{secrets.token_hex(4)}"
    with psycopg.connect(args.database, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    database = urlunsplit(urlsplit(args.database)._replace(path=f"/{name}"))
    root = Path(tempfile.mkdtemp(prefix="zd-takeover-"))
    service = Service(root, database)
    results: dict[str, list[tuple[float, float]]] = {"kill": [], "stop": []}
    try:
        service.zd("up", "--version", "v1")
        with LoadGenerator(
            f"http://127.0.0.1:{service.port}/", rate=args.rate, max_seconds=900
        ) as load:
            for how in ("kill", "stop"):
                for n in range(args.rounds):
                    results[how].append(one_round(service, how))
                    print(how, n + 1, *(f"{v:.2f}s" for v in results[how][-1]), flush=True)
        print(
            f"\nPostgreSQL state store, LEASE {LEASE:g}s, {args.rounds} rounds of each, load {args.rate:g} req/s"
        )
        for how, label in (("kill", "kill -9 of the leader"), ("stop", "SIGSTOP of the leader")):
            leases = [lease for lease, _ in results[how]]
            acting = [act for _, act in results[how]]
            print(f"{label}: lease taken {spread(leases)}; first pass done {spread(acting)}")
        print(f"requests: {load.report.summary()}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "zerodown.cli.main", "down", "-f", str(service.file)],
            capture_output=True,
            timeout=120,
            cwd=root,
        )
        for child in service.standbys:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGCONT)
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        with psycopg.connect(args.database, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
