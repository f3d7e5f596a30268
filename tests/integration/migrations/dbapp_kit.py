"""Helpers for the PostgreSQL-backed sample app's proofs: a fresh database, a service directory
running `demo/dbapp.py` with migrations, and a load of writes and reads that checks every answer."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from support.services import free_port
from support.workspace import Workspace, base_spec
from zerodown.migrations import api

DEMO = Path(__file__).resolve().parents[3] / "src" / "zerodown" / "demo"
DBAPP = DEMO / "dbapp.py"
MIGRATIONS = DEMO / "migrations"
NEW_COLUMN_VERSIONS = "v2,v3"


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped (with its connections) afterwards."""
    name = f"zd_dbapp_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_migration(migrations_dir: Path, name: str) -> None:
    """Copy one of the demo's migration files into a service's migrations directory."""
    migrations_dir.mkdir(exist_ok=True)
    shutil.copy(MIGRATIONS / name, migrations_dir / name)


def dbapp_workspace(root: Path, database: str, **strategy: Any) -> Workspace:
    """A service `shop` of two dbapp instances behind the router, migrations in root/migrations.

    `database` goes to `migrations.database` as it is (a URL or `${VAR}`); the instances get
    DATABASE_URL, ZERODOWN_DB_SCHEMA and PGAPPNAME from zerodown, nothing from the spec."""
    port = free_port()
    ws = Workspace(root=root, port=port)
    spec = base_spec(port)
    spec["run"] = {
        "command": [sys.executable, str(DBAPP), "{port}", "{version}"],
        "env": {"ZD_DBAPP_NEW_COLUMN_VERSIONS": NEW_COLUMN_VERSIONS},
        "drain": "3s",
        "stop_timeout": "5s",
    }
    spec["strategy"] = {"rolling": {"max_surge": 1, "max_unavailable": 0, **strategy}}
    spec["migrations"] = {"database": database, "dir": "migrations/"}
    ws.write_spec(spec)
    add_migration(root / "migrations", "0001_create_users.yaml")
    return ws


def migrate_status(db_url: str) -> dict[str, Any]:
    cli = [sys.executable, "-m", "zerodown.cli.main"]
    result = subprocess.run(
        [*cli, "migrate", "status", "--database", db_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def migration_phases(db_url: str) -> dict[str, str]:
    """Each migration's latest phase (a migration rolled back and started again: `started`).

    In-process (cheap enough to poll); `migrate_status` is the CLI's view of the same."""
    history = api.status(db_url)["history"]  # newest first
    return {h["name"]: h["phase"] for h in reversed(history)}


def rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(query).fetchall()


@contextmanager
def dbapp_process(port: int, version: str, db_url: str, schema: str) -> Iterator[str]:
    """One dbapp instance started by hand, as the rollout would start it; SIGTERM at the end."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": db_url,
        "ZERODOWN_DB_SCHEMA": schema,
        "PGAPPNAME": f"zerodown:shop:{version}",
        "ZD_DBAPP_NEW_COLUMN_VERSIONS": NEW_COLUMN_VERSIONS,
    }
    proc = subprocess.Popen(
        [sys.executable, str(DBAPP), str(port), version],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"dbapp {version} did not get ready on {url}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, f"dbapp {version} exited {proc.returncode}: {err.decode()}"


# the load -------------------------------------------------------------------------------------
@dataclass
class Op:
    at: float  # wall clock when sent
    kind: str  # "create" or "read"
    status: int  # 0 = no response
    version: str  # X-Version of the answer
    user_id: int = 0
    error: str = ""
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class UserLoad:
    """Writes (POST /users) and reads of rows written earlier (GET /users/<id>), paced at `rate`
    over keep-alive connections, for at most `max_seconds` and `max_requests`. An answer that is
    not exactly the expected one (201 with an id; 200 with the name and email written) fails."""

    port: int
    rate: float = 300.0
    connections: int = 16
    max_seconds: float = 90.0
    max_requests: int = 60_000
    timeout: float = 5.0
    write_share: float = 0.5
    ops: list[Op] = field(default_factory=list)
    created: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, email)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._ids: list[int] = []
        self._seq = 0

    def __enter__(self) -> UserLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 10)
        assert not self._thread.is_alive(), "the load did not stop"

    # report
    @property
    def failed(self) -> list[Op]:
        return [o for o in self.ops if not o.ok]

    def versions(
        self, kind: str | None = None, since: float = 0.0, until: float = 1e12
    ) -> Counter[str]:
        return Counter(
            o.version
            for o in self.ops
            if o.ok and since <= o.at < until and (kind is None or o.kind == kind)
        )

    def summary(self) -> str:
        span = (self.ops[-1].at - self.ops[0].at) if len(self.ops) > 1 else 0.0
        rate = len(self.ops) / span if span else 0.0
        kinds = Counter(o.kind for o in self.ops)
        latencies = sorted(o.latency for o in self.ops if o.ok) or [0.0]
        p50, p99 = (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.99)
        )
        return (
            f"{len(self.ops)} requests ({kinds['create']} writes, {kinds['read']} reads) at "
            f"{rate:.0f}/s, {len(self.failed)} failed, p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, by version {dict(self.versions())}"
        )

    # the loop
    def _running(self, started: float) -> bool:
        return (
            not self._stop.is_set()
            and time.monotonic() - started < self.max_seconds
            and len(self.ops) < self.max_requests
        )

    async def _main(self) -> None:
        started = time.monotonic()
        self._next = started
        await asyncio.gather(*(self._worker(started, n) for n in range(self.connections)))

    async def _worker(self, started: float, worker: int) -> None:
        rng = random.Random(worker)
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        interval = 1.0 / self.rate
        while self._running(started):
            slot, self._next = self._next, max(self._next, time.monotonic() - 1) + interval
            if (delay := slot - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            if not self._running(started):
                break
            op = self._choose(rng, worker)
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.port), self.timeout
                    )
                keep = await asyncio.wait_for(self._exchange(op, *conn), self.timeout)
                if not keep:
                    conn[1].close()
                    conn = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                op.error = op.error or f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn[1].close()
                conn = None
            op.latency = time.monotonic() - t0
            self.ops.append(op)
        if conn is not None:
            conn[1].close()
            await asyncio.sleep(0)

    def _choose(self, rng: random.Random, worker: int) -> Op:
        if not self._ids or rng.random() < self.write_share:
            return Op(time.time(), "create", 0, "")
        return Op(time.time(), "read", 0, "", user_id=rng.choice(self._ids))

    async def _exchange(
        self, op: Op, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        host = f"Host: 127.0.0.1:{self.port}\r\n"
        if op.kind == "create":
            self._seq += 1
            name, email = f"user{self._seq}", f"user{self._seq}-{secrets.token_hex(3)}@example.org"
            body = json.dumps({"name": name, "email": email}).encode()
            writer.write(
                f"POST /users HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        else:
            writer.write(f"GET /users/{op.user_id} HTTP/1.1\r\n{host}\r\n".encode())
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        op.status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        op.version = headers.get("x-version", "")
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            answer = json.loads(payload or b"null")
        except ValueError:
            answer = None
        if op.kind == "create":
            if op.status == 201 and isinstance(answer, dict) and isinstance(answer.get("id"), int):
                op.user_id = answer["id"]
                self.created[op.user_id] = (name, email)
                self._ids.append(op.user_id)
            else:
                op.error = f"POST /users: {op.status} {payload[:200]!r}"
        else:
            name, email = self.created[op.user_id]
            expected = {"id": op.user_id, "name": name, "email": email}
            if op.status != 200 or answer != expected:
                op.error = f"GET /users/{op.user_id}: {op.status} {payload[:200]!r}"
        return headers.get("connection", "").lower() != "close"


def missing_rows(
    db_url: str, table: str, column: str, created: dict[int, tuple[str, str]]
) -> list[Any]:
    """Rows the load was told were created that are not in `table` as written."""
    found = {r[0]: (r[1], r[2]) for r in rows(db_url, f"SELECT id, name, {column} FROM {table}")}
    return [(i, v, found.get(i)) for i, v in created.items() if found.get(i) != v]
