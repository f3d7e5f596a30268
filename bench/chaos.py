"""Chaos rehearsal: rollouts of every strategy back to back under load, with faults injected at
seeded random moments, and the invariants checked after each rollout.

    python bench/chaos.py --rollouts 70 --seed 1 [--rate 300] [--faults-per-rollout 3]
                          [--json out.json] [--only 4,20-21]

Faults: kill -9 of the controller (then `zerodown up`), of an instance, of the router; SIGSTOP of
an instance for longer than its liveness window (then SIGCONT); the state store locked for
seconds; an instance whose probe endpoints hang; an instance that answers slowly.

Invariants, after every rollout:
- it ended in a final phase (completed, aborted or failed) with its reason;
- no instance runs twice (two live processes with one instance id), and no process runs that
  the controller does not know;
- the router's route table is the one the status says;
- every failed request is explained: a killed or stopped instance held it, or it went on a
  connection the killed router held (listed from /proc before the kill -9, and matched by the
  client's local port); anything else is a violation, a new connection failing while a killed
  router was down included (the controller keeps the listening socket for the standby);
and at the end, nothing is left running after `zerodown down`.

The schedule (which fault, when, on what, for how long) comes from the seed alone and is printed
first: a failing seed replays the same faults at the same moments. Only loopback traffic; a
throwaway workspace; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from zerodown import procfs
from zerodown.control.client import ApiError, Client, NotRunning
from zerodown.demo.tour import sample_app_spec
from zerodown.loadgen import LoadGenerator, Sample
from zerodown.net import free_port
from zerodown.paths import Paths

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"
KINDS = (
    "kill_controller",
    "kill_instance",
    "kill_router",
    "stop_instance",
    "lock_store",
    "hang_probe",
    "slow_backend",
)
STRATEGIES = ("rolling", "blue_green", "canary")
FINAL = ("completed", "aborted", "failed")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the rollout started
    kind: str
    pick: int  # which instance (modulo the live ones)
    hold: float  # seconds the fault lasts (stop, lock, hang, slow; the controller's downtime)


def schedule(seed: int, rollouts: int, per_rollout: int) -> list[list[Fault]]:
    """The whole run's faults, from the seed alone."""
    rng = random.Random(seed)
    return [
        sorted(
            (
                Fault(
                    at=round(rng.uniform(0.2, 8.0), 2),
                    kind=rng.choice(KINDS),
                    pick=rng.randrange(1000),
                    hold=round(rng.uniform(2.5, 4.0), 2),
                )
                for _ in range(per_rollout)
            ),
            key=lambda f: f.at,
        )
        for _ in range(rollouts)
    ]


@dataclass
class Injected:
    rollout: int
    fault: Fault
    started: float = 0.0  # wall clock
    ended: float = 0.0
    target: str = ""
    note: str = ""
    # kill_router: the client ports of the connections the killed router held at the kill
    held: frozenset[int] = frozenset()


@dataclass
class Violation:
    rollout: int
    invariant: str
    detail: str


@dataclass
class Run:
    injected: list[Injected] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    checks: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)


def chaos_spec(port: int, strategy: str) -> dict[str, Any]:
    spec = sample_app_spec(port, {})
    spec["run"] = {**spec["run"], "drain": "1s", "stop_timeout": "3s"}
    spec["probes"] = {
        "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 25},
        "readiness": {"http": "/ready", "period": "500ms", "timeout": "400ms"},
        # SIGSTOP for 2.5 s or more outlasts this: 3 failures 500 ms apart
        "liveness": {
            "http": "/healthz",
            "period": "500ms",
            "timeout": "400ms",
            "failure_threshold": 3,
        },
    }
    spec["strategy"] = {
        "rolling": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
        "blue_green": {"blue_green": {"auto_promote": True, "scale_down_delay": "2s"}},
        "canary": {
            "canary": {
                "steps": [
                    {"set_weight": 20},
                    {"pause": {"duration": "2s"}},
                    {"set_weight": 60},
                    {"pause": {"duration": "2s"}},
                    {"set_weight": 100},
                ]
            }
        },
    }[strategy]
    return spec


class Service:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.spec = root / "zerodown.yaml"
        self.paths = Paths.for_spec(self.spec)

    def zd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(self.spec)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Through whichever controller runs now; waits out a restart."""
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(self.paths) as client:
                    if method == "GET":
                        return client.get(path)
                    return client.post(path, {"who": "chaos", **(body or {})})
            except (NotRunning, httpx.HTTPError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the controller did not answer for 60 s: {exc}") from exc
                time.sleep(0.2)
            except ApiError as exc:  # 409 (a previous rollout cleaning up), 503 (store locked)
                if exc.status not in (409, 503) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def pid_of(self, name: str) -> int | None:
        state = self.paths.state
        try:
            if name == "controller":
                return int(json.loads((state / "controller.json").read_text())["pid"])
            return int((state / "router.pid").read_text().split()[0])
        except (OSError, ValueError, KeyError, IndexError):  # absent, or being written
            return None

    def router_routes(self) -> dict[str, Any] | None:
        """The router's table; None when no router answered within 30 s."""
        transport = httpx.HTTPTransport(uds=str(self.paths.state / "router.sock"))
        deadline = time.monotonic() + 30
        with httpx.Client(transport=transport, base_url="http://router", timeout=5) as c:
            while True:
                try:
                    return dict(c.get("/routes").json())
                except httpx.HTTPError:  # restarting after a kill
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.1)

    def instance_processes(self) -> list[tuple[int, str]]:
        """(pid, instance id) of every live process launched for this state directory."""
        state = str(self.paths.state.resolve()).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            env = dict(e.partition(b"=")[::2] for e in environ if b"=" in e)
            if stat != "Z" and env.get(b"ZERODOWN_STATE_DIR") == state:
                found.append((int(entry.name), env.get(b"ZERODOWN_INSTANCE", b"").decode()))
        return found


def live_instances(svc: Service) -> list[dict[str, Any]]:
    state = svc.api("GET", "/api/status")
    return [i for i in state["instances"] if i["phase"] in ("starting", "running") and i["handle"]]


def inject(svc: Service, rollout: int, fault: Fault) -> Injected:
    done = Injected(rollout=rollout, fault=fault, started=time.time())
    kind = fault.kind
    if kind == "kill_controller":
        pid = svc.pid_of("controller")
        if pid:
            os.kill(pid, signal.SIGKILL)
        time.sleep(fault.hold / 4)
        up = svc.zd("up")
        done.target, done.note = f"pid {pid}", f"up exited {up.returncode}"
    elif kind == "kill_router":
        pid = svc.pid_of("router")
        if pid:
            # Frozen first, so that the connections it holds can be listed with none accepted
            # meanwhile: a failed request is then explained by its connection, not by a time.
            os.kill(pid, signal.SIGSTOP)
            done.started = time.time()
            done.held = frozenset(client_ports(pid, svc.port))
            os.kill(pid, signal.SIGKILL)
        done.target = f"pid {pid} ({len(done.held)} client connections)"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the controller has a router answering again
            if svc.pid_of("router") not in (None, pid) and answers(svc.port):
                break
            time.sleep(0.02)
        done.note = f"back after {time.time() - done.started:.2f} s"
    elif kind == "lock_store":
        db = sqlite3.connect(svc.paths.state / "state.db", timeout=10)
        db.execute("BEGIN EXCLUSIVE")
        time.sleep(fault.hold)
        db.rollback()
        db.close()
    else:
        live = live_instances(svc)
        if not live:
            done.note = "no live instance"
        else:
            inst = live[fault.pick % len(live)]
            pid = int(inst["handle"].split(":")[0])
            done.target = f"{inst['id']} (pid {pid})"
            if kind == "kill_instance":
                os.kill(pid, signal.SIGKILL)
            elif kind == "stop_instance":
                os.kill(pid, signal.SIGSTOP)
                time.sleep(fault.hold)
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    done.note = "killed while stopped"
            else:
                admin(inst["address"], "hang" if kind == "hang_probe" else "slow", fault)
    done.ended = time.time()
    return done


def client_ports(pid: int, port: int) -> set[int]:
    """The client-side ports of the connections that process `pid` accepted on `port` and
    holds now."""
    return {remote for _, remote in procfs.accepted(pid, {port})}


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def admin(address: str, what: str, fault: Fault) -> None:
    on, off = (
        ("/admin/hang?on=1", "/admin/hang?on=0")
        if what == "hang"
        else ("/admin/slow?ms=300", "/admin/slow?ms=0")
    )
    try:
        httpx.post(f"http://{address}{on}", timeout=2)
        time.sleep(fault.hold)
        httpx.post(f"http://{address}{off}", timeout=2)
    except httpx.HTTPError:
        pass  # restarted or stopped meanwhile: the fault ended with it


def wait_final(svc: Service, version: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = svc.api("GET", "/api/status")["status"]
        rollout = status.get("rollout") or {}
        if rollout.get("version") == version and rollout.get("phase") in FINAL:
            return dict(rollout)
        time.sleep(0.2)
    return {"version": version, "phase": "(none: timed out)", "reason": ""}


def settle(svc: Service, timeout: float = 60) -> dict[str, Any]:
    """Wait until every instance the controller wants runs and is ready, the routes applied."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = svc.api("GET", "/api/status")
        instances = state["instances"]
        if (
            len(instances) == state["instances_wanted"]
            and all(i["phase"] == "running" and i["ready"] for i in instances)
            and not state["status"]["stopping"]
        ):
            return state
        time.sleep(0.2)
    return state


def check(run: Run, svc: Service, n: int, rollout: dict[str, Any]) -> None:
    def expect(ok: bool, invariant: str, detail: str) -> None:
        run.checks[invariant] += 1
        if not ok:
            run.violations.append(Violation(n, invariant, detail))

    run.phases[rollout["phase"]] += 1
    expect(
        rollout["phase"] in FINAL and bool(rollout.get("reason")),
        "final phase with a reason",
        f"{rollout['phase']}: {rollout.get('reason')!r}",
    )
    state = settle(svc)
    processes = svc.instance_processes()
    ids = Counter(iid for _, iid in processes)
    twice = [iid for iid, count in ids.items() if count > 1]
    expect(not twice, "no instance launched twice", f"two processes for {twice}")
    known = {i["id"] for i in state["instances"]}
    strays = sorted(set(ids) - known)
    expect(not strays, "no process the controller does not know", f"unknown instances {strays}")
    routes, wanted = svc.router_routes(), state["status"]["routes"]
    expect(routes is not None, "the router answers", "no router answered for 30 s")
    if routes is None:
        return

    def routing(table: dict[str, Any]) -> Any:
        return (
            [
                (p["release"], p["weight"], sorted(b["address"] for b in p["backends"]))
                for p in table["pools"]
            ],
            table["matches"],
            table["sticky"],
            table["preview"],
        )

    # The status may change the moment it is read (an instance turning ready); the controller
    # applies a new table in its next pass and checks the router's every second: a mismatch
    # that outlasts 5 s is the violation.
    deadline = time.monotonic() + 5
    while routing(routes) != routing(wanted) and time.monotonic() < deadline:
        time.sleep(0.25)
        routes = svc.router_routes() or routes
        wanted = svc.api("GET", "/api/status")["status"]["routes"]
    expect(
        routing(routes) == routing(wanted),
        "route table matches the status",
        f"router {routing(routes)} vs status {routing(wanted)}, for 5 s",
    )


def explain(failure: Sample, injected: list[Injected]) -> str | None:
    """The fault that explains a failed request, if any."""
    start, end = failure.at, failure.at + failure.latency
    for f in injected:
        kind = f.fault.kind
        if kind in ("kill_instance",) and start <= f.started <= end + 0.05:
            return kind  # the killed process held it
        if kind == "stop_instance" and start <= f.ended + 0.05 and end >= f.started:
            return kind  # held by a stopped process (then killed by liveness or resumed)
        if (
            kind == "kill_router"
            and failure.port in f.held
            and failure.opened <= f.started <= end + 0.05
        ):
            # On a connection the killed router held: in flight at the kill, or sent after it
            # on that keep-alive connection (the strict client does not retry). A request on
            # any other connection has no such excuse: the listening socket outlives the
            # router, so a new connection waits for the standby instead of failing.
            return f"{kind} ({'sent after it on a connection it held' if start > f.started else 'in flight'})"
    return None


def describe(failure: Sample, injected: list[Injected], t0: float) -> str:
    """A failed request with what its connection was: to see why nothing explains it."""
    kills = [i for i in injected if i.fault.kind == "kill_router" and i.started <= failure.at]
    last = max(kills, key=lambda i: i.started) if kills else None
    conn = f"port {failure.port}" if failure.port else "no connection"
    if failure.port:
        conn += f" opened {failure.opened - t0:.3f} s"
    since = (
        f"; {failure.at - last.started:.3f} s after kill_router {last.target} (rollout "
        f"{last.rollout}, back {last.ended - last.started:.3f} s later; held by it: "
        f"{failure.port in last.held})"
        if last
        else ""
    )
    return f"{failure.at - t0:.3f} s {failure.error or failure.status} on {conn}{since}"


def clusters(failures: list[Sample], injected: list[Injected], t0: float) -> list[str]:
    """Unexplained failures grouped by time (a gap of a second starts a new group), each with
    the fault that came last before it: where to look."""
    groups: list[list[Sample]] = []
    for f in sorted(failures, key=lambda x: x.at):
        if groups and f.at - groups[-1][-1].at <= 1.0:
            groups[-1].append(f)
        else:
            groups.append([f])
    lines = []
    for g in groups:
        before = [i for i in injected if i.started <= g[0].at]
        last = max(before, key=lambda i: i.started) if before else None
        kinds = Counter(x.error.split(":")[0] if x.error else str(x.status) for x in g)
        where = (
            f"{last.fault.kind} {last.target} at {last.started - t0:.2f} s (rollout {last.rollout})"
            if last
            else "none"
        )
        lines.append(
            f"{g[0].at - t0:8.2f}-{g[-1].at - t0:8.2f} s: {len(g)} failed {dict(kinds)};"
            f" last fault {where}"
        )
    return lines


def rollout_numbers(text: str) -> set[int]:
    """`4,20-21` -> {4, 20, 21}."""
    numbers: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            numbers.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not rollout numbers like 4,20-21: {text!r}") from None
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--faults-per-rollout", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument(
        "--only",
        type=rollout_numbers,
        help="run only these rollouts of the seed's schedule (e.g. 4,20-21): the same faults "
        "at the same moments, to replay a part of a long run",
    )
    args = parser.parse_args()
    plan = schedule(args.seed, args.rollouts, args.faults_per_rollout)
    chosen = [n for n in range(1, args.rollouts + 1) if not args.only or n in args.only]
    print(f"seed {args.seed}: {args.rollouts} rollouts, {sum(map(len, plan))} faults")
    if args.only:
        print(f"  running only rollouts {', '.join(map(str, chosen))}")
    for n, faults in enumerate(plan, 1):
        print(
            f"  rollout {n} ({STRATEGIES[(n - 1) % 3]}): "
            + ", ".join(f"{f.kind}@{f.at:g}s" for f in faults)
        )

    root = Path(tempfile.mkdtemp(prefix="zerodown-chaos-"))
    shutil.copy(APP, root / "app.py")
    port = free_port()
    svc = Service(root, port)
    svc.spec.write_text(yaml.safe_dump(chaos_spec(port, "rolling"), sort_keys=False))
    run = Run()
    up = svc.zd("up", "--version", "v0")
    if up.returncode != 0:
        raise SystemExit(f"zerodown up failed: {up.stderr}")
    started = time.time()
    try:
        with LoadGenerator(f"http://127.0.0.1:{port}/", rate=args.rate, max_seconds=7200) as load:
            for n in chosen:
                faults = plan[n - 1]
                strategy, version = STRATEGIES[(n - 1) % 3], f"v{n}"
                spec = chaos_spec(port, strategy)
                svc.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
                svc.api("POST", "/api/deploy", {"version": version, "spec": spec})
                begun = time.monotonic()
                injected: list[Injected] = []

                def faults_thread(
                    faults: list[Fault] = faults,
                    begun: float = begun,
                    n: int = n,
                    injected: list[Injected] = injected,
                ) -> None:
                    for fault in faults:
                        time.sleep(max(0.0, begun + fault.at - time.monotonic()))
                        try:
                            injected.append(inject(svc, n, fault))
                        except Exception as exc:  # the bench's own failure, not zerodown's
                            injected.append(
                                Injected(
                                    n,
                                    fault,
                                    time.time(),
                                    time.time(),
                                    note=f"not injected: {exc!r}",
                                )
                            )

                thread = threading.Thread(target=faults_thread)
                thread.start()
                rollout = wait_final(svc, version, timeout=180)
                thread.join()
                run.injected.extend(injected)
                check(run, svc, n, rollout)
                print(
                    f"rollout {n} {strategy} {version}: {rollout['phase']} ({rollout.get('reason')})"
                    f"; faults: "
                    + ", ".join(f"{i.fault.kind} {i.target} {i.note}".strip() for i in injected),
                    flush=True,
                )
            time.sleep(1)
        report = load.report
    finally:
        down = svc.zd("down")
        leftover = svc.instance_processes()
        for name in ("controller", "router"):
            pid = svc.pid_of(name)
            if pid is not None and Path(f"/proc/{pid}").exists():
                leftover.append((pid, name))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    run.checks["nothing left after down"] += 1
    if down.returncode != 0 or leftover:
        run.violations.append(Violation(0, "nothing left after down", f"{down.stderr} {leftover}"))

    explained: Counter[str] = Counter()
    unexplained: list[Sample] = []
    stale_after: list[float] = []  # seconds from a router's kill to a request sent on its conn
    for failure in report.failed:
        why = explain(failure, run.injected)
        if why and why.startswith("kill_router (sent after"):
            kill = max(
                (
                    i
                    for i in run.injected
                    if i.fault.kind == "kill_router" and i.started < failure.at
                ),
                key=lambda i: i.started,
            )
            stale_after.append(failure.at - kill.started)
        if why:
            explained[why] += 1
        else:
            unexplained.append(failure)
    run.checks["every failed request explained"] += 1
    if unexplained:
        run.violations.append(
            Violation(
                0,
                "every failed request explained",
                f"{len(unexplained)}: "
                + "; ".join(describe(s, run.injected, started) for s in unexplained[:10]),
            )
        )
    kinds = Counter(i.fault.kind for i in run.injected)
    print(
        f"\n{report.total} requests in {time.time() - started:.0f} s, {len(report.failed)} failed:"
        f" explained {dict(explained)}, unexplained {len(unexplained)}"
    )
    if stale_after:
        print(
            f"requests sent after a router's kill on a connection it held: {len(stale_after)},"
            f" {min(stale_after):.3f}-{max(stale_after):.3f} s after the kill"
        )
    held = [len(i.held) for i in run.injected if i.fault.kind == "kill_router"]
    if held:
        print(f"client connections the killed routers held: {sum(held)} over {len(held)} kills")
    print(f"faults injected: {sum(kinds.values())} {dict(kinds)}")
    print(f"rollouts ended: {dict(run.phases)}")
    print(f"invariants checked: {sum(run.checks.values())} {dict(run.checks)}")
    print(f"violations: {len(run.violations)}")
    for v in run.violations:
        print(f"  rollout {v.rollout}: {v.invariant}: {v.detail}")
    groups = clusters(unexplained, run.injected, started)
    if groups:
        print("unexplained failures, by time:")
        for line in groups[:30]:
            print("  " + line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "chaos": {
                        "seed": args.seed,
                        "rollouts": args.rollouts,
                        "requests": report.total,
                        "failed": len(report.failed),
                        "failed_explained": dict(explained),
                        "failed_unexplained": len(unexplained),
                        "killed_router_connections": sum(held),
                        "sent_after_kill_on_its_connections": len(stale_after),
                        "faults": dict(kinds),
                        "phases": dict(run.phases),
                        "checks": dict(run.checks),
                        "violations": [asdict(v) for v in run.violations],
                        "unexplained_by_time": groups,
                    }
                },
                indent=1,
            )
        )
    return 1 if run.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
