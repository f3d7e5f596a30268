"""What the rollout engine and the CLI call. Synchronous: the engine runs them in a thread.

Lifecycle of one migration against one base schema (default `public`):

    start(db_url, file, service=…, version=…)  → "public_0002_rename_email"   (expand)
    … old and new app versions run side by side, each on its own version schema …
    complete(db_url)                                                         (contract)
or  rollback(db_url)                                       (undo; the old version lost nothing)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg.types.json import Jsonb

from zerodown.core.errors import SpecError

from . import alembic_source, state
from .actions import DBAction, MigrationError
from .catalog import grants_sql, read_schema
from .executor import Executor, Options, Stats, drop_schema_action
from .model import Migration, load_migration
from .mysql import api as mysql_api
from .mysql.osc import MysqlOptions
from .planner import MigrationPlan, plan_migration, view_sql, views_action
from .schema import Schema, ident

Log = Callable[[str], None]

__all__ = [
    "MigrationError",
    "Options",
    "Plan",
    "app_env",
    "complete",
    "old_version_connections",
    "pending",
    "plan",
    "rollback",
    "schema_for",
    "start",
    "status",
]


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


@contextmanager
def _connect(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    if not db_url:
        raise MigrationError("no database given: pass --database URL or set DATABASE_URL")
    try:
        conn = psycopg.connect(
            db_url, autocommit=True, application_name="zerodown:migrate", connect_timeout=10
        )
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MigrationError(f"cannot connect to {_redact(db_url)}: {reason}") from None
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _session(db_url: str, base: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection holding the advisory lock, with the state schema in place."""
    with _connect(db_url) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (state.ADVISORY_KEY,)).fetchone()
        if not got or not got[0]:
            raise MigrationError(
                "another `zerodown migrate` is running against this database; wait for it to "
                "finish (it holds advisory lock 'zerodown')"
            )
        try:
            conn.execute(state.DDL)
            # raw SQL and the users' expressions name tables as they would in their base schema
            conn.execute(f"SET search_path = {ident(base)}")
            yield conn
        except psycopg.Error as e:
            raise MigrationError(f"database error: {str(e).strip()}") from None
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (state.ADVISORY_KEY,))


# plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    sql: str
    locks: str
    transactional: bool = True
    note: str = ""


@dataclass(frozen=True)
class Plan:
    name: str
    version_schema: str
    previous_schema: str
    unsafe: bool
    phases: dict[str, list[Statement]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        out = [
            f"-- migration {self.name}: new version schema {self.version_schema}"
            f" (old version keeps {self.previous_schema})"
        ]
        if self.unsafe:
            out.append(
                "-- UNSAFE: holds raw SQL zerodown cannot check; run `zerodown migrate lint`"
            )
        for phase, stmts in self.phases.items():
            out.append(f"\n-- == {phase} ==")
            if not stmts:
                out.append("-- (nothing)")
            for s in stmts:
                tx = "" if s.transactional else ", outside a transaction"
                out.append(f"-- locks: {s.locks}{tx}")
                out.append(s.sql.rstrip(";") + ";")
        return "\n".join(out)


def _statements(actions: tuple[DBAction, ...] | list[DBAction]) -> list[Statement]:
    return [Statement(a.sql, a.locks, a.transactional, a.note) for a in actions]


def _to_plan(p: MigrationPlan, previous: str) -> Plan:
    backfill = [
        Statement(
            f"-- UPDATE {ident(p.before.base)}.{ident(b.table)} in batches by "
            f"({', '.join(c for c, _ in b.pk)}), "
            + (
                f"setting {', '.join(c for c, _ in b.fills)} where still NULL (triggers skip it)"
                if b.fills
                else "firing the up triggers"
            ),
            locks=f"ROW EXCLUSIVE on {b.table}; row locks on one batch at a time",
        )
        for b in p.backfills
    ]
    drop_prev = [] if previous == p.before.base else [drop_schema_action(previous)]
    return Plan(
        name=p.name,
        version_schema=p.version_schema,
        previous_schema=previous,
        unsafe=p.unsafe,
        phases={
            "start": _statements(p.start),
            "backfill": backfill + _statements(p.after_backfill),
            "views": _statements([p.views]),
            "complete": _statements(drop_prev + list(p.complete)),
            "rollback": _statements([drop_schema_action(p.version_schema), *p.rollback]),
        },
    )


def plan(db_url: str, file: str | Path, *, options: Options | None = None) -> Plan:
    """The SQL every phase of `file` would run against the database as it is now."""
    o = options or Options()
    m = load_migration(file)
    if mysql_api.is_mysql_url(db_url):
        raise MigrationError("`migrate plan` is for PostgreSQL; on MySQL `start` runs the change")
    with _connect(db_url) as conn:
        schema = read_schema(conn, o.base_schema)
        previous = _previous_schema(conn, o.base_schema)
    return _to_plan(plan_migration(m, schema), previous)


def _previous_schema(conn: psycopg.Connection[Any], base: str) -> str:
    try:
        last = state.latest_completed(conn, base)
    except pgerr.UndefinedTable:
        return base
    return str(last["version_schema"]) if last else base


# start / complete / rollback ---------------------------------------------------------------
def start(
    db_url: str,
    file: str | Path | Migration,
    *,
    service: str | None = None,
    version: str | None = None,
    options: Options | None = None,
    log: Log | None = None,
    allow: tuple[str, ...] = (),
) -> str:
    """Expand: returns the new version's schema name. Running it again resumes or returns."""
    if mysql_api.is_mysql_url(db_url):
        return mysql_api.start(
            db_url,
            file,
            service=service,
            version=version,
            allow=allow,
            log=log,
            options=_mysql_options(options),
        )
    o = options or Options()
    m = file if isinstance(file, Migration) else load_migration(file)
    if isinstance(file, Migration):
        file = f"revision {m.alembic.revision if m.alembic else m.name}"
    base = o.base_schema
    with _session(db_url, base) as conn:
        ex = Executor(conn, o, log)
        done = state.completed(conn, base, m.name or "")
        if done is not None:
            _record(conn, service, version, done["version_schema"])
            return str(done["version_schema"])
        active = state.active(conn, base)
        if active is not None and active["name"] != m.name:
            raise MigrationError(
                f"migration {active['name']} is active on schema {base} ({active['phase']}); "
                f"complete or roll it back before starting {m.name}"
            )
        if active is not None:
            if active["definition"] != m.to_json():
                raise MigrationError(
                    f"{file} changed since migration {m.name} started; roll it back first, or "
                    "restore the file"
                )
            if active["phase"] == "started":
                _record(conn, service, version, active["version_schema"])
                return str(active["version_schema"])
            snapshot = Schema.from_json(active["snapshot"])
            migration_id = int(active["id"])
            ex.event(f"resuming the start of {m.name}")
        else:
            snapshot = read_schema(conn, base)
            p = plan_migration(m, snapshot)  # validates before anything is written
            try:
                row = conn.execute(
                    "INSERT INTO zerodown.migrations (base_schema, name, version_schema,"
                    " previous_schema, phase, definition, snapshot, unsafe, service, version)"
                    " VALUES (%s, %s, %s, %s, 'starting', %s, %s, %s, %s, %s) RETURNING id",
                    (
                        base,
                        m.name,
                        p.version_schema,
                        _previous_schema(conn, base),
                        Jsonb(m.to_json()),
                        Jsonb(snapshot.to_json()),
                        p.unsafe,
                        service,
                        version,
                    ),
                ).fetchone()
            except pgerr.UniqueViolation:
                raise MigrationError(
                    f"another migration became active on schema {base}; run status"
                ) from None
            assert row is not None
            migration_id = int(row[0])
        p = plan_migration(m, snapshot)
        ex.run_all(p.start)
        for b in p.backfills:
            ex.backfill(migration_id, b)
        ex.run_all(p.after_backfill)
        final = read_schema(conn, base) if m.raw_only else p.after
        views = views_action(final, p.version_schema)

        def mark_started() -> None:
            for grant in grants_sql(conn, final, p.version_schema):
                conn.execute(grant)
            conn.execute(
                "UPDATE zerodown.migrations SET phase = 'started' WHERE id = %s", (migration_id,)
            )
            _record(conn, service, version, p.version_schema)

        ex.transaction("create the version schema", [views], then=mark_started)
        ex.event(f"started {m.name}: new version schema {p.version_schema}")
        _last_stats[db_url] = ex.stats
        return p.version_schema


_last_stats: dict[str, Stats] = {}


def _mysql_options(o: Options | None) -> MysqlOptions | None:
    """--lock-timeout (whole seconds on MySQL, at least 1) and --batch-size carry over."""
    if o is None:
        return None
    return MysqlOptions(lock_timeout=max(1, math.ceil(o.lock_timeout)), batch_size=o.batch_size)


def last_stats(db_url: str) -> Stats | None:
    """Counters of the last start/complete/rollback in this process (retries, rows)."""
    return _last_stats.get(db_url)


def _record(
    conn: psycopg.Connection[Any], service: str | None, version: str | None, schema: str
) -> None:
    if service and version:
        state.record_version(conn, service, version, schema)


def _active_plan(
    conn: psycopg.Connection[Any], base: str, verb: str
) -> tuple[dict[str, Any], MigrationPlan]:
    active = state.active(conn, base)
    if active is None:
        last = state.latest_completed(conn, base)
        extra = f" (the last one, {last['name']}, is completed)" if last else ""
        if verb == "roll back" and last:
            extra += (
                "; a completed migration cannot be rolled back: the old version's columns are gone"
            )
        raise MigrationError(f"no active migration on schema {base} to {verb}{extra}")
    m = Migration.model_validate(active["definition"])
    return active, plan_migration(m, Schema.from_json(active["snapshot"]))


def complete(db_url: str, *, options: Options | None = None, log: Log | None = None) -> str:
    """Contract: drop what only the old version used; returns the migration's name."""
    if mysql_api.is_mysql_url(db_url):
        return mysql_api.complete(db_url, log=log, options=_mysql_options(options))
    o = options or Options()
    base = o.base_schema
    with _session(db_url, base) as conn:
        ex = Executor(conn, o, log)
        active, p = _active_plan(conn, base, "complete")
        if active["phase"] != "started":
            raise MigrationError(
                f"the start of {active['name']} did not finish; run `zerodown migrate start` "
                "again to resume it, or roll it back"
            )
        ex.run_all(a for a in p.complete if not a.transactional)
        previous = str(active["previous_schema"])
        drops = [] if previous in (base, p.version_schema) else [drop_schema_action(previous)]
        migration = Migration.model_validate(active["definition"])
        raw_only = migration.raw_only

        def finish() -> None:
            if migration.alembic is not None:  # Alembic's history agrees with the database
                for sql, args in alembic_source.stamp_sql(migration.alembic.revision):
                    conn.execute(sql, args)
            if drops:  # releases that used the dropped schema are gone by now
                conn.execute("DELETE FROM zerodown.versions WHERE schema_name = %s", (previous,))
            if raw_only:
                final = read_schema(conn, base)
                conn.execute(view_sql(final, p.version_schema))
                for grant in grants_sql(conn, final, p.version_schema):
                    conn.execute(grant)
            conn.execute(
                "UPDATE zerodown.migrations SET phase = 'completed', finished_at = now()"
                " WHERE id = %s",
                (active["id"],),
            )

        ex.transaction(
            f"complete {active['name']}",
            drops + [a for a in p.complete if a.transactional],
            then=finish,
        )
        ex.event(f"completed {active['name']}")
        _last_stats[db_url] = ex.stats
        return str(active["name"])


def rollback(db_url: str, *, options: Options | None = None, log: Log | None = None) -> str:
    """Undo a started (or half-started) migration; returns its name."""
    if mysql_api.is_mysql_url(db_url):
        return mysql_api.rollback(db_url, log=log, options=_mysql_options(options))
    o = options or Options()
    base = o.base_schema
    with _session(db_url, base) as conn:
        ex = Executor(conn, o, log)
        active, p = _active_plan(conn, base, "roll back")

        def finish() -> None:
            conn.execute(
                "DELETE FROM zerodown.versions WHERE schema_name = %s", (p.version_schema,)
            )
            conn.execute(
                "UPDATE zerodown.migrations SET phase = 'rolled_back', finished_at = now()"
                " WHERE id = %s",
                (active["id"],),
            )

        ex.transaction(
            f"roll back {active['name']}",
            [drop_schema_action(p.version_schema), *(a for a in p.rollback if a.transactional)],
            then=finish,
        )
        # after the transaction: an index that became a constraint's goes with the constraint
        ex.run_all(a for a in p.rollback if not a.transactional)
        ex.event(f"rolled back {active['name']}")
        _last_stats[db_url] = ex.stats
        return str(active["name"])


# queries -------------------------------------------------------------------------------------
def _state_ready(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('zerodown.migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("definition", "snapshot")}
    for k in ("started_at", "finished_at"):
        if out.get(k) is not None:
            out[k] = out[k].isoformat()
    out["operations"] = [next(iter(o)) for o in row["definition"].get("operations", [])]
    return out


def status(db_url: str, *, options: Options | None = None) -> dict[str, Any]:
    """The active migration (phase, backfill progress), the history, each release's schema."""
    if mysql_api.is_mysql_url(db_url):
        return mysql_api.status(db_url)
    base = (options or Options()).base_schema
    with _connect(db_url) as conn:
        if not _state_ready(conn):
            return {
                "base_schema": base,
                "active": None,
                "current_schema": base,
                "history": [],
                "versions": [],
            }
        active = state.active(conn, base)
        result: dict[str, Any] = {
            "base_schema": base,
            "active": _jsonable(active) if active else None,
            "current_schema": _previous_schema(conn, base),
            "history": [_jsonable(r) for r in state.history(conn, base)],
            "versions": [
                {"service": s, "version": v, "schema": n, "recorded_at": t.isoformat()}
                for s, v, n, t in conn.execute(
                    "SELECT service, version, schema_name, recorded_at FROM zerodown.versions"
                    " ORDER BY recorded_at DESC LIMIT 50"
                ).fetchall()
            ],
        }
        if active:
            result["active"]["backfills"] = [
                {"table": t, "rows": r, "done": d, "cursor": c}
                for t, r, d, c in conn.execute(
                    "SELECT table_name, rows, done, cursor FROM zerodown.backfills"
                    " WHERE migration_id = %s ORDER BY table_name",
                    (active["id"],),
                ).fetchall()
            ]
        return result


def _natural(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def migration_files(migrations_dir: str | Path) -> list[Path]:
    d = Path(migrations_dir)
    if not d.is_dir():
        raise SpecError("the migrations directory does not exist", file=str(d))
    files = [p for p in d.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()]
    return sorted(files, key=_natural)


def pending(
    db_url: str,
    migrations_dir: str | Path,
    *,
    options: Options | None = None,
    allow: tuple[str, ...] = (),
) -> Path | Migration | None:
    """The first migration file in `migrations_dir` not yet completed (an active one counts).

    Given an Alembic configuration file (`alembic.ini`) instead of a directory: the first
    Alembic revision after the database's alembic_version, as a Migration (`allow` lets it hold
    operations that are refused otherwise, see alembic_source.ALLOWABLE).
    """
    base = (options or Options()).base_schema
    if str(migrations_dir).endswith(".ini"):
        if mysql_api.is_mysql_url(db_url):
            raise MigrationError(
                "Alembic revisions run on PostgreSQL only; on MySQL/MariaDB use migration files"
            )
        with _connect(db_url) as conn:
            conn.execute(f"SET search_path = {ident(base)}")
            heads = alembic_source.current_heads(conn)
        revisions = alembic_source.pending_revisions(Path(migrations_dir), heads)
        return alembic_source.to_migration(revisions[0], allow) if revisions else None
    files = migration_files(migrations_dir)
    if mysql_api.is_mysql_url(db_url):
        return mysql_api.pending(db_url, files)
    with _connect(db_url) as conn:
        done: set[str] = set()
        if _state_ready(conn):
            rows = conn.execute(
                "SELECT name FROM zerodown.migrations WHERE base_schema = %s AND phase = 'completed'",
                (base,),
            ).fetchall()
            done = {r[0] for r in rows}
    for f in files:
        if load_migration(f).name not in done:
            return f
    return None


def old_version_connections(db_url: str, service: str, version: str) -> int:
    """Connections tagged `zerodown:<service>:<version>` (application_name) open right now.

    MySQL/MariaDB: 0 (its contract only drops the old table's copy, which no version uses)."""
    if mysql_api.is_mysql_url(db_url):
        return 0
    with _connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND pid <> pg_backend_pid()",
            (f"zerodown:{service}:{version}",),
        ).fetchone()
        return int(row[0]) if row else 0


def schema_for(
    db_url: str, version: str, *, service: str | None = None, options: Options | None = None
) -> str:
    """The version schema a release should use.

    A release recorded by `start` gets that migration's schema; any other release (one deployed
    before the active migration) gets the schema of the last completed migration, or the base
    schema when there is none.
    """
    if mysql_api.is_mysql_url(db_url):  # one physical schema: the database
        return str(mysql_api.connect_args(db_url)["database"])
    base = (options or Options()).base_schema
    with _connect(db_url) as conn:
        if not _state_ready(conn):
            return base
        query = "SELECT schema_name FROM zerodown.versions WHERE version = %s"
        args: list[Any] = [version]
        if service:
            query += " AND service = %s"
            args.append(service)
        row = conn.execute(query + " ORDER BY recorded_at DESC LIMIT 1", args).fetchone()
        return str(row[0]) if row else _previous_schema(conn, base)


def is_mysql_url(db_url: str) -> bool:
    """A MySQL or MariaDB URL: its migrations run as online schema changes (mysql/)."""
    return mysql_api.is_mysql_url(db_url)


def app_env(service: str, version: str, schema: str) -> dict[str, str]:
    """Environment for an app instance: its schema, and the connection tag libpq picks up."""
    return {"ZERODOWN_DB_SCHEMA": schema, "PGAPPNAME": f"zerodown:{service}:{version}"}
