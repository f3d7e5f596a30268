"""`zerodown demo`: the whole job in one command, on embedded defaults.

A throwaway workspace with the sample app; v1 starts; steady traffic flows from the built-in load
generator; v2 goes out as a canary (5%, 25%, 50%, 100%) and is promoted; v3, which fails a fifth
of its requests, goes out next and is aborted. Then, when PostgreSQL is at hand ($DATABASE_URL, or
the embedded server of the `pgserver` wheel), a second service on the database sample app renames
a column while both its versions serve writes and reads. A summary table shows what every phase
cost. Every process it started, the database server included, is stopped at the end, whatever
happens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from zerodown.control.client import Client
from zerodown.control.process import shut_down, start_controller
from zerodown.loadgen import LoadGenerator, Report
from zerodown.net import free_port
from zerodown.paths import Paths

console = Console()


def sample_app_spec(port: int, faults: dict[str, Any]) -> dict[str, Any]:
    """Two instances of the shipped sample app (app.py beside the spec) behind a router on
    `port`; `faults` by version, as $ZD_APP_FAULTS takes them."""
    return {
        "service": "shop",
        "instances": 2,
        "run": {
            "command": [sys.executable, "app.py", "{port}", "{version}"],
            "env": {"ZD_APP_FAULTS": json.dumps(faults)},
            "drain": "2s",
            "stop_timeout": "5s",
        },
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 25},
            "readiness": {"http": "/ready", "period": "1s"},
            "liveness": {"http": "/healthz", "period": "5s"},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
    }


def demo_spec(port: int) -> dict[str, Any]:
    return {
        **sample_app_spec(port, {"v3": {"fail_rate": 0.2}}),
        "analysis": {
            "templates": {
                "health": {
                    "metrics": [
                        {
                            "name": "error-rate",
                            "provider": "router",
                            "query": "error_rate",
                            "interval": "1s",
                            "failure_condition": "result > 0.05",
                            "min_samples": 5,
                        }
                    ]
                }
            }
        },
        "strategy": {
            "canary": {
                "analysis": {"templates": ["health"]},
                "steps": [
                    {"set_weight": 5},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 25},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 50},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 100},
                ],
            }
        },
    }


DB_ENV = "ZD_DEMO_DATABASE_URL"  # the controller expands ${ZD_DEMO_DATABASE_URL} in the spec
RENAME = "rename email → email_address"


def db_spec(port: int) -> dict[str, Any]:
    """The second service: the database sample app, rolling one instance at a time, with
    migrations. v2 calls the column `email_address`, v1 `email` (the rename under way)."""
    return {
        "service": "users",
        "instances": 2,
        "run": {
            "command": [sys.executable, "dbapp.py", "{port}", "{version}"],
            "env": {"ZD_DBAPP_NEW_COLUMN_VERSIONS": "v2,v3", "ZD_DBAPP_POOL": "2"},
            "drain": "2s",
            "stop_timeout": "5s",
        },
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 50},
            "readiness": {"http": "/ready", "period": "500ms", "failure_threshold": 2},
            "liveness": {"http": "/healthz", "period": "5s"},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
        # min_ready keeps v1 and v2 side by side a while: both write into the same rows
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0, "min_ready": "1s"}},
        "migrations": {"database": "${" + DB_ENV + "}", "dir": "migrations/"},
    }


class Skip(Exception):
    """The rename phase cannot run; the message says why, in one line."""


class DemoDatabase:
    """The PostgreSQL the rename phase uses: a throwaway database in $DATABASE_URL's server, or
    else an embedded server (the `pgserver` wheel) with its data under the demo's workspace.

    The embedded server starts in a thread while the first phases run (initdb takes seconds);
    `url()` waits for it; `close()` drops the database or stops the server, whatever happened.
    """

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self._url = ""
        self.source = ""  # where the database is, for the demo to say
        self._problems: list[str] = []
        self._dropdb: tuple[str, str] | None = None  # (server URL, database name)
        self._server: Any = None
        self._get_server: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._start, name="demo-postgres", daemon=True)

    def begin(self) -> None:
        try:
            # Imported here, in the main thread: the warnings filter is process-wide.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                from pgserver.postgres_server import get_server

            self._get_server = get_server
        except ImportError:
            pass
        self._thread.start()

    def url(self, timeout: float = 30.0) -> str:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise Skip(f"PostgreSQL did not start within {timeout:g}s")
        if not self._url:
            raise Skip("; ".join(self._problems) or "no PostgreSQL")
        return self._url

    def _start(self) -> None:
        external = os.environ.get("DATABASE_URL")
        if external:
            try:
                self._url = self._fresh_database(external)
                self.source = "a throwaway database in $DATABASE_URL's server"
                return
            except Exception as exc:  # any failure means: try the embedded server instead
                self._problems.append(f"$DATABASE_URL: {_one_line(exc)}")
        if self._get_server is None:
            self._problems.append("the `pgserver` package (embedded PostgreSQL) is not installed")
            return
        try:
            server = self._get_server(self.datadir, cleanup_mode="delete")
            with self._lock:
                self._server = server
                if self._closed:  # close() ran while the server was starting
                    self._stop_server()
                    return
            self._url = server.get_uri()
            self.source = f"embedded PostgreSQL (pgserver) in {self.datadir}"
        except Exception as exc:
            self._problems.append(f"embedded PostgreSQL: {_one_line(exc)}")

    def _fresh_database(self, server_url: str) -> str:
        """A database of the demo's own in the user's server: nothing of theirs is touched."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        name = f"zerodown_demo_{secrets.token_hex(4)}"
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._dropdb = (server_url, name)
        return make_conninfo(server_url, dbname=name)

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_server()
        if self._dropdb is not None:
            import psycopg

            server_url, name = self._dropdb
            self._dropdb = None
            with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._thread.join(15)
        with self._lock:
            self._stop_server()  # started after all, while close() waited


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


@dataclass
class Phase:
    name: str
    started: float
    reports: list[Report] = field(default_factory=list)
    ended: float = 0.0
    outcome: str = ""


def _active(status: dict[str, Any]) -> bool:
    return status["rollout"]["phase"] in ("progressing", "paused")


class Tour:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        demo = resources.files("zerodown.demo")
        (root / "app.py").write_text(demo.joinpath("app.py").read_text())
        (root / "zerodown.yaml").write_text(yaml.safe_dump(demo_spec(self.port), sort_keys=False))
        self.paths = Paths.for_spec(root / "zerodown.yaml")
        self.spec = demo_spec(self.port)
        self.phases: list[Phase] = []
        self.db = DemoDatabase(root / "postgres")
        self.db_paths: Paths | None = None
        self.stopped: set[Path] = set()

    def say(self, text: str) -> None:
        console.print(f"[bold cyan]▶[/] {text}")

    def wait(self, client: Client, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state: dict[str, Any] = client.get("/api/status")
            if predicate(state["status"]):
                return state
            time.sleep(0.2)
        raise TimeoutError("the demo waited too long; see .zerodown/logs/")

    def phase(self, name: str, *reports: Report) -> Phase:
        self.end_phase()
        self.phases.append(Phase(name, time.time(), list(reports)))
        return self.phases[-1]

    def end_phase(self) -> None:
        if self.phases and not self.phases[-1].ended:
            self.phases[-1].ended = time.time()

    def run(self) -> int:
        self.say(
            f"workspace {self.root}: sample app + zerodown.yaml (canary 5% → 25% → 50% → 100%)"
        )
        self.db.begin()  # the embedded PostgreSQL gets ready while the canary phases run
        start_controller(self.paths)
        with Client(self.paths) as client:
            p = self.phase("start v1")
            client.post("/api/deploy", {"version": "v1", "spec": self.spec, "who": "demo"})
            self.wait(client, lambda s: s["stable"] == "v1")
            p.outcome = "serving"
            self.say(f"v1 serves on http://127.0.0.1:{self.port}; sending 200 requests/s")
            with LoadGenerator(
                f"http://127.0.0.1:{self.port}/", rate=200, connections=8, max_seconds=80
            ) as load:
                p.reports.append(load.report)
                time.sleep(1)
                p = self.phase("canary v2", load.report)
                self.say("deploy v2 as a canary: weight 5%, 25%, 50%, 100%, pausing 3s at each")
                client.post("/api/deploy", {"version": "v2", "spec": self.spec, "who": "demo"})
                state = self.wait(
                    client, lambda s: s["rollout"]["phase"] != "progressing" or s["stable"] == "v2"
                )
                p.outcome = state["status"]["rollout"]["phase"]
                self.say(f"v2: {state['status']['rollout']['reason']}")
                time.sleep(1)
                p = self.phase("canary v3 (faulty)", load.report)
                self.say(
                    "deploy v3, which fails 20% of its requests; analysis watches its error rate"
                )
                client.post("/api/deploy", {"version": "v3", "spec": self.spec, "who": "demo"})
                state = self.wait(
                    client, lambda s: not _active(s) and s["rollout"]["version"] == "v3"
                )
                p.outcome = state["status"]["rollout"]["reason"]
                self.say(f"v3 {state['status']['rollout']['phase']}: {p.outcome}")
                time.sleep(1.5)
                self.phase("back on v2", load.report).outcome = "serving"
                time.sleep(1)
            self.end_phase()
        # The first service has shown what it had to; it stops now, leaving the CPU to the next.
        self.stop(self.paths)
        try:
            db_url = self.db.url()
        except Skip as why:
            console.print(
                f"[yellow]column rename skipped: no PostgreSQL ({why})[/]", soft_wrap=True
            )
        else:
            self.rename(db_url)
        self.summary(load.report)
        return 0

    def rename(self, db_url: str) -> None:
        """A second service on PostgreSQL: v1 on migration 0001, then v2 with 0002 (a column
        rename) rolled out under writes and reads, both versions serving side by side."""
        demo = resources.files("zerodown.demo")
        root = self.root / "users-service"
        (root / "migrations").mkdir(parents=True)
        (root / "dbapp.py").write_text(demo.joinpath("dbapp.py").read_text())
        migrations = demo.joinpath("migrations")
        first, second = "0001_create_users.yaml", "0002_rename_email.yaml"
        (root / "migrations" / first).write_text(migrations.joinpath(first).read_text())
        port = free_port()
        spec = db_spec(port)
        (root / "zerodown.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.db_paths = paths = Paths.for_spec(root / "zerodown.yaml")
        os.environ[DB_ENV] = db_url  # the controller inherits it; no URL is written to disk
        url = f"http://127.0.0.1:{port}"
        self.say(
            f"second service {root.name}: the database sample app (dbapp.py) on "
            f"{self.db.source}; migrations: {{database: ${{{DB_ENV}}}, dir: migrations/}}"
        )
        start_controller(paths)
        with Client(paths) as client:
            p = self.phase("users v1 on 0001")
            client.post("/api/deploy", {"version": "v1", "spec": spec, "who": "demo"})
            state = self.wait(client, lambda s: s["stable"] == "v1")
            schemas = {"v1": _migrate_check(state)}
            p.outcome = "serving"
            self.say(f"users v1 serves on {url}: {schemas['v1'].get('reason', '')}")
            seed = _post_user(url, "seed")
            (root / "migrations" / second).write_text(migrations.joinpath(second).read_text())
            body = json.dumps({"name": "demo", "email": "d@example.com"}).encode()
            with (
                LoadGenerator(
                    f"{url}/users",
                    method="POST",
                    body=body,
                    headers={"Content-Type": "application/json"},
                    rate=60,
                    connections=4,
                    max_seconds=60,
                ) as writes,
                LoadGenerator(
                    f"{url}/users/{seed}", rate=60, connections=4, max_seconds=60
                ) as reads,
            ):
                p.reports += [writes.report, reads.report]
                time.sleep(1)
                p = self.phase(RENAME, writes.report, reads.report)
                self.say(
                    f"add migrations/{second} and deploy v2 (rolling, one instance at a time) "
                    "under 60 writes/s (POST /users) and 60 reads/s (GET /users/<id>)"
                )
                began = time.time()
                client.post("/api/deploy", {"version": "v2", "spec": spec, "who": "demo"})
                state = self.wait(
                    client, lambda s: not _active(s) and s["rollout"]["version"] == "v2"
                )
                done = time.time()
                schemas["v2"] = _migrate_check(state)
                p.outcome = f"{state['status']['rollout']['phase']}, v1 and v2 side by side"
                time.sleep(1)
            self.end_phase()
            self.rename_report(db_url, url, seed, writes.report, reads.report, began, done)
            p.outcome += f"; {self.rename_status(db_url, schemas)} (contract waits)"

    def rename_report(
        self,
        db_url: str,
        url: str,
        seed: int,
        writes: Report,
        reads: Report,
        began: float,
        done: float,
    ) -> None:
        during = [s for r in (writes, reads) for s in r.samples if began <= s.at < done]
        failed = sum(1 for s in during if s.failed)
        colour = "green" if failed == 0 else "red"
        console.print(
            f"[{colour}]{RENAME}: {len(during)} requests during the rollout, {failed} failed[/]",
            soft_wrap=True,
        )
        by_version: dict[str, int] = {}
        for s in writes.samples:
            if began <= s.at < done and s.status == 201:
                by_version[s.version] = by_version.get(s.version, 0) + 1
        written = ", ".join(f"{v} {n}" for v, n in sorted(by_version.items())) or "none"
        console.print(f"rows written during the rollout: {written}", soft_wrap=True)
        created = 1 + sum(1 for s in writes.samples if s.status == 201)
        count = _get_json(f"{url}/users/count").get("count")
        verdict = "none lost" if count == created else "[red]rows missing[/]"
        console.print(
            f"the users table holds {count} rows; the loads were told {created} were created "
            f"(seed included): {verdict}",
            soft_wrap=True,
        )

    def rename_status(self, db_url: str, schemas: dict[str, dict[str, Any]]) -> str:
        from zerodown.migrations import api

        for version, check in schemas.items():
            detail = check.get("detail", {})
            console.print(
                f"{version} uses schema {detail.get('schema', '?')} ({check.get('reason', '')})",
                soft_wrap=True,
            )
        active: dict[str, Any] = api.status(db_url)["active"] or {}
        phase = f"{active.get('name', '0002_rename_email')} {active.get('phase', 'not active')}"
        console.print(
            f"{phase}, not completed: v1 could still come back. The contract (the column "
            "renamed for real, v1's schema dropped) waits for the next deploy "
            "(`zerodown deploy v3`) or `zerodown migrate complete`.",
            soft_wrap=True,
        )
        return phase

    def stop(self, paths: Paths) -> None:
        if paths.spec in self.stopped:
            return
        self.stopped.add(paths.spec)
        try:
            shut_down(paths, who="demo", timeout=60)
        except Exception as exc:
            console.print(f"[yellow]cleanup: {exc}[/]")

    def summary(self, report: Any) -> None:
        table = Table(title="zerodown demo")
        for column in ("phase", "seconds", "requests", "failed", "served by", "outcome"):
            table.add_column(column)
        for p in self.phases:
            samples = [
                s
                for r in p.reports
                for s in r.samples
                if p.started <= s.at < (p.ended or time.time())
            ]
            versions: dict[str, int] = {}
            for s in samples:
                if not s.failed:
                    versions[s.version] = versions.get(s.version, 0) + 1
            served = ", ".join(f"{v} {n}" for v, n in sorted(versions.items()))
            table.add_row(
                p.name,
                f"{(p.ended or time.time()) - p.started:.1f}",
                str(len(samples)),
                str(sum(1 for s in samples if s.failed)),
                served or "-",
                p.outcome,
            )
        console.print(table)
        from_v3 = sum(1 for s in report.failed if s.version == "v3")
        console.print(
            f"shop: {report.total} requests in all, {len(report.failed)} failed, {from_v3} of "
            "them v3's own injected errors while analysis had it at 5% of traffic."
        )
        console.print(
            "Try it by hand: [bold]zerodown init[/] writes zerodown.yaml and app.py; then "
            "`zerodown up --version v1`, `zerodown deploy v2 --wait`, `zerodown status`, "
            "`zerodown history`, `zerodown rollback --wait`, `zerodown down`. The rename: "
            'docs/migrations.md, "The sample app with a database".'
        )

    def cleanup(self) -> None:
        """Every service, then the database: each step runs whatever the one before did."""
        try:
            self.stop(self.paths)
        finally:
            try:
                if self.db_paths is not None:
                    self.stop(self.db_paths)
            finally:
                try:
                    self.db.close()
                except Exception as exc:
                    console.print(f"[yellow]cleanup: PostgreSQL: {_one_line(exc)}[/]")


def _migrate_check(state: dict[str, Any]) -> dict[str, Any]:
    rollout = state["status"].get("rollout") or {}
    return dict((rollout.get("checks") or {}).get("migrate") or {})


def _post_user(url: str, name: str) -> int:
    import httpx

    with httpx.Client(timeout=5) as client:
        answer = client.post(f"{url}/users", json={"name": name, "email": f"{name}@example.com"})
        answer.raise_for_status()
        return int(answer.json()["id"])


def _get_json(url: str) -> dict[str, Any]:
    import httpx

    with httpx.Client(timeout=5) as client:
        answer = client.get(url)
        answer.raise_for_status()
        return dict(answer.json())


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C: nothing the demo started stays


def run_demo(keep: bool = False) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="zerodown-demo-"))
    tour = Tour(root)
    try:
        return tour.run()
    finally:
        tour.cleanup()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
