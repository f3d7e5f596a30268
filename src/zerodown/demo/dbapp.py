"""The PostgreSQL-backed sample service, for the migration demos and proofs.

    python3 dbapp.py PORT VERSION

  POST /users        {"name": ..., "email": ...} -> 201 {"id": N, "version": VERSION}
  GET  /users/<id>   200 {"id", "name", "email"}, 404 when there is no such user
  GET  /users/count  200 {"count": N}
  GET  /healthz      200 while the process is alive (no database call)
  GET  /ready        200 while the database answers the app's own query, 503 otherwise
  every response carries X-Version: VERSION

Environment:
  DATABASE_URL                  the PostgreSQL URL (required)
  ZERODOWN_DB_SCHEMA            the schema to read and write through (zerodown sets it for every
                                instance of a release); search_path is that schema, then public
  PGAPPNAME                     libpq sends it as application_name (zerodown sets it too)
  ZD_DBAPP_NEW_COLUMN_VERSIONS  comma-separated versions that call the email column
                                `email_address` (after migration 0002); others call it `email`
  ZD_DBAPP_POOL                 database connections per instance (default 4)

The only thing this app knows about migrations is the search_path: the version schema holds one
view per table, shaped the way this version expects. SIGTERM: stop accepting, finish the requests
in flight, close the database connections, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def email_column(version: str, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The name this version gives the email column: the rename is the migration under test."""
    new = {v.strip() for v in env.get("ZD_DBAPP_NEW_COLUMN_VERSIONS", "").split(",") if v.strip()}
    return "email_address" if version in new else "email"


def search_path(schema: str) -> str:
    """`schema, public` as a libpq `options` value (public once when the schema is public)."""
    schemas = [schema] if schema == "public" else [schema, "public"]
    return "-c search_path=" + ",".join(f'"{s}"' for s in schemas)


class Pool:
    """A few autocommit connections shared by the requests of one event loop.

    psycopg_pool is not a dependency of zerodown; a queue of connections is all this demo needs.
    A connection that broke is replaced at its next use.
    """

    def __init__(self, url: str, schema: str, size: int) -> None:
        self.url = url
        self.options = search_path(schema)
        self._idle: asyncio.LifoQueue[psycopg.AsyncConnection[Any] | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(None)
        self._all: set[psycopg.AsyncConnection[Any]] = set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._idle.get()
        try:
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    self._all.discard(conn)
                conn = None
                # No prepared statements: a migration may replace a view under a cached plan
                # ("cached plan must not change result type").
                conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    options=self.options,
                    connect_timeout=5,
                    prepare_threshold=None,
                )
                self._all.add(conn)
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in list(self._all):
            await conn.close()
        self._all.clear()


class App:
    def __init__(self, version: str, pool: Pool, column: str) -> None:
        self.version = version
        self.pool = pool
        col = sql.Identifier(column)
        self.insert = sql.SQL("INSERT INTO users (name, {}) VALUES (%s, %s) RETURNING id").format(
            col
        )
        self.select = sql.SQL("SELECT id, name, {} FROM users WHERE id = %s").format(col)
        self.probe = sql.SQL("SELECT id, name, {} FROM users LIMIT 0").format(col)
        self.closing = False
        self.inflight = 0
        self.writers: set[asyncio.StreamWriter] = set()

    def response(self, status: int, payload: Any) -> bytes:
        body = (json.dumps(payload) + "\n").encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Version: {self.version}\r\n"
        )
        if self.closing:
            head += "Connection: close\r\n"
        return head.encode() + b"\r\n" + body

    async def route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/healthz":
            return 200, {"alive": True}
        if path == "/ready":
            return await self.ready()
        if path == "/users" and method == "POST":
            return await self.create(body)
        if path == "/users/count" and method == "GET":
            async with self.pool.connection() as conn:
                row = await (await conn.execute("SELECT count(*) FROM users")).fetchone()
            return 200, {"count": row[0] if row else 0}
        if path.startswith("/users/") and method == "GET":
            key = path.removeprefix("/users/")
            if not key.isdigit():
                return 404, {"error": "no such user"}
            async with self.pool.connection() as conn:
                row = await (await conn.execute(self.select, (int(key),))).fetchone()
            if row is None:
                return 404, {"error": "no such user"}
            return 200, {"id": row[0], "name": row[1], "email": row[2]}
        if path in ("/users", "/users/count"):
            return 405, {"error": f"{method} is not allowed on {path}"}
        return 404, {"error": "not found"}

    async def ready(self) -> tuple[int, Any]:
        if self.closing:
            return 503, {"ready": False, "reason": "shutting down"}
        try:
            async with self.pool.connection() as conn:
                # The app's own columns: a version whose schema is missing never gets ready.
                await conn.execute(self.probe)
        except (psycopg.Error, OSError) as exc:
            return 503, {"ready": False, "reason": f"{type(exc).__name__}: {exc}".strip()}
        return 200, {"ready": True}

    async def create(self, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("name", "email")
        ):
            return 400, {"error": 'send {"name": "...", "email": "..."} (both strings)'}
        async with self.pool.connection() as conn:
            row = await (await conn.execute(self.insert, (data["name"], data["email"]))).fetchone()
        assert row is not None
        return 201, {"id": row[0], "version": self.version}

    async def handle(self, method: str, target: str, body: bytes) -> bytes:
        path = target.partition("?")[0]
        try:
            status, payload = await self.route(method, path, body)
        except (psycopg.Error, OSError) as exc:
            # A database failure is the server's: 500, and a line in the instance's log.
            print(f"dbapp {self.version}: {method} {path}: {exc!r}", file=sys.stderr, flush=True)
            status, payload = 500, {"error": f"database: {type(exc).__name__}"}
        return self.response(status, payload)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while not self.closing:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" "), "", ""][:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.inflight += 1
                try:
                    length = int(headers.get("content-length", "0") or 0)
                    body = await reader.readexactly(length) if length else b""
                    writer.write(await self.handle(method, target, body))
                    await writer.drain()
                finally:
                    self.inflight -= 1
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()


async def main(port: int, version: str) -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("dbapp: set DATABASE_URL to the PostgreSQL URL (postgresql://...)")
    schema = os.environ.get("ZERODOWN_DB_SCHEMA") or "public"
    pool = Pool(url, schema, int(os.environ.get("ZD_DBAPP_POOL", "4")))
    app = App(version, pool, email_column(version))
    server = await asyncio.start_server(app.serve, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    app.closing = True
    server.close()
    deadline = loop.time() + 30
    while app.inflight and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for writer in list(app.writers):
        writer.close()
    await pool.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        raise SystemExit("usage: python3 dbapp.py PORT VERSION")
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
