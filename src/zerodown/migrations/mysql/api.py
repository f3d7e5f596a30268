"""start / complete / rollback / status for MySQL and MariaDB (`mysql://` or `mariadb://` URLs).

The same migration files as PostgreSQL; the operations that change an existing table run as an
online schema change (osc.py). MySQL has no per-version schema of views, so both versions share
one physical table, and the compatibility window is the table's shape:

- before the swap (during the copy) every app sees the old shape;
- from the atomic swap on, every app sees the new shape.

So `start` finishes with the swap, before the first new instance, and only changes the old
version keeps working with are run without asking: add a column (nullable or with a default),
change a type that holds the old values, add an index. A rename breaks the old version's
statements from the swap and is refused unless allowed. `complete` drops the old table's copy;
`rollback` before the swap drops the shadow and triggers; after it, the table keeps its new shape
(the old version works with it) and the migration stays started.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..actions import MigrationError
from ..model import Migration, load_migration
from ..ops import CreateTable
from ..ops.base import ColumnDef
from .osc import MysqlOptions, OscStats, Runner, decode_key, encode_key
from .plan import TableChange, TableInfo, plan_tables, q

SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
LOCK = "zerodown_migrate"

STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS zerodown_migrations (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
    " name VARCHAR(64) NOT NULL, phase VARCHAR(16) NOT NULL, definition LONGTEXT NOT NULL,"
    " service VARCHAR(100), version VARCHAR(100),"
    " started_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, finished_at TIMESTAMP NULL)",
    "CREATE TABLE IF NOT EXISTS zerodown_osc (migration_id BIGINT NOT NULL,"
    " table_name VARCHAR(64) NOT NULL, phase VARCHAR(16) NOT NULL, cursor_key TEXT,"
    " upper_key TEXT, rows_copied BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (migration_id, table_name))",
)


def is_mysql_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in SCHEMES


def connect_args(url: str) -> dict[str, Any]:
    u = urlsplit(url)
    database = u.path.lstrip("/")
    if not database:
        raise MigrationError(f"{u.scheme}:// URL names no database: add /DBNAME")
    args: dict[str, Any] = {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
        "database": database,
    }
    socket = parse_qs(u.query).get("unix_socket")
    if socket:
        args["unix_socket"] = socket[0]
    return args


@contextmanager
def _connect(url: str) -> Iterator[Any]:
    try:
        import pymysql
    except ImportError:
        raise MigrationError("MySQL/MariaDB needs PyMySQL: pip install 'zerodown[mysql]'") from None
    args = connect_args(url)
    try:
        conn = pymysql.connect(**args, autocommit=True, connect_timeout=10, charset="utf8mb4")
    except pymysql.err.MySQLError as e:
        raise MigrationError(
            f"cannot connect to MySQL at {args['host']}:{args['port']}/{args['database']}: "
            f"{e.args[-1]}"
        ) from None
    try:
        yield conn
    except pymysql.err.MySQLError as e:
        raise MigrationError(f"database error: {e.args[-1]} (MySQL {e.args[0]})") from None
    finally:
        conn.close()


@contextmanager
def _session(url: str, options: MysqlOptions | None, log: Any) -> Iterator[Runner]:
    with _connect(url) as conn:
        r = Runner(conn, options or MysqlOptions(), log)
        got = r.execute("SELECT GET_LOCK(%s, 0)", (LOCK,))
        if not got or got[0][0] != 1:
            raise MigrationError(
                "another `zerodown migrate` is running against this database; wait for it to "
                f"finish (it holds GET_LOCK('{LOCK}'))"
            )
        try:
            for ddl in STATE_DDL:
                r.execute(ddl)
            yield r
        finally:
            if conn.open:
                r.execute("SELECT RELEASE_LOCK(%s)", (LOCK,))


def _table_info(r: Runner, name: str) -> TableInfo | None:
    cols = r.execute(
        "SELECT column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
        (name,),
    )
    if not cols:
        return None
    pk = r.execute(
        "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema ="
        " DATABASE() AND table_name = %s AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
        (name,),
    )
    triggers = r.execute(
        "SELECT trigger_name FROM information_schema.triggers WHERE event_object_schema ="
        " DATABASE() AND event_object_table = %s AND trigger_name NOT LIKE '\\_zd\\_%%'",
        (name,),
    )
    fks = r.execute(
        "SELECT constraint_name FROM information_schema.referential_constraints WHERE"
        " constraint_schema = DATABASE() AND (table_name = %s OR referenced_table_name = %s)",
        (name, name),
    )
    return TableInfo(
        name=name,
        columns=tuple(str(c[0]) for c in cols),
        primary_key=tuple(str(p[0]) for p in pk),
        has_triggers=bool(triggers),
        foreign_keys=tuple(str(f[0]) for f in fks),
        not_null=tuple(str(c[0]) for c in cols if c[1] == "NO"),
    )


def _plan(
    r: Runner, m: Migration, allow: tuple[str, ...]
) -> tuple[list[TableChange], list[CreateTable]]:
    names = {getattr(op, "table", None) for op in m.ops} - {None}
    infos = {str(n): i for n in names if (i := _table_info(r, str(n))) is not None}
    return plan_tables(m.ops, infos, allow)


def _column_sql(c: ColumnDef) -> str:
    out = f"{q(c.name)} {c.type}"
    if c.primary_key:
        out += " PRIMARY KEY"
    elif not c.nullable:
        out += " NOT NULL"
    if c.default is not None:
        out += f" DEFAULT {c.default}"
    if c.unique and not c.primary_key:
        out += " UNIQUE"
    return out


def _active(r: Runner) -> dict[str, Any] | None:
    rows = r.execute(
        "SELECT id, name, phase, definition, service, version FROM zerodown_migrations"
        " WHERE phase IN ('starting', 'started') ORDER BY id DESC LIMIT 1"
    )
    if not rows:
        return None
    i, name, phase, definition, service, version = rows[0]
    return {
        "id": int(i),
        "name": name,
        "phase": phase,
        "definition": json.loads(definition),
        "service": service,
        "version": version,
    }


def _definition(m: Migration, allow: tuple[str, ...]) -> dict[str, Any]:
    return {**m.to_json(), "_allow": list(allow)}


def _table_phase(r: Runner, mid: int, table: str) -> tuple[str, Any, Any] | None:
    rows = r.execute(
        "SELECT phase, cursor_key, upper_key FROM zerodown_osc WHERE migration_id = %s"
        " AND table_name = %s",
        (mid, table),
    )
    if not rows:
        return None
    return str(rows[0][0]), decode_key(rows[0][1]), decode_key(rows[0][2])


def _set_phase(r: Runner, mid: int, table: str, phase: str) -> None:
    r.execute(
        "INSERT INTO zerodown_osc (migration_id, table_name, phase) VALUES (%s, %s, %s)"
        " ON DUPLICATE KEY UPDATE phase = VALUES(phase)",
        (mid, table, phase),
    )


_last_stats: dict[str, OscStats] = {}


def last_stats(url: str) -> OscStats | None:
    return _last_stats.get(url)


def start(
    url: str,
    file: str | Path | Migration,
    *,
    service: str | None = None,
    version: str | None = None,
    options: MysqlOptions | None = None,
    allow: tuple[str, ...] = (),
    log: Any = None,
) -> str:
    """Run the online schema change through the swap; returns the database's name."""
    m = file if isinstance(file, Migration) else load_migration(file)
    database = str(connect_args(url)["database"])
    with _session(url, options, log) as r:
        done = r.execute(
            "SELECT id FROM zerodown_migrations WHERE name = %s AND phase = 'completed'", (m.name,)
        )
        if done:
            return database
        active = _active(r)
        if active is not None and active["name"] != m.name:
            raise MigrationError(
                f"migration {active['name']} is active ({active['phase']}); complete or roll it "
                f"back before starting {m.name}"
            )
        if active is not None:
            allow = tuple(active["definition"].get("_allow", allow))
            if active["phase"] == "started":
                return database
            mid = int(active["id"])
            r.log(f"resuming the start of {m.name}")
        changes, creates = _plan(r, m, allow)  # refuses before anything is written
        if active is None:
            r.execute(
                "INSERT INTO zerodown_migrations (name, phase, definition, service, version)"
                " VALUES (%s, 'starting', %s, %s, %s)",
                (m.name, json.dumps(_definition(m, allow)), service, version),
            )
            mid = int(r.execute("SELECT LAST_INSERT_ID()")[0][0])
        for c in creates:
            cols = ", ".join(_column_sql(col) for col in c.columns)
            r.ddl(f"CREATE TABLE IF NOT EXISTS {q(c.table)} ({cols})")
        for t in changes:
            _run_table(r, mid, t)
        r.execute("UPDATE zerodown_migrations SET phase = 'started' WHERE id = %s", (mid,))
        r.log(f"started {m.name}: {', '.join(t.table for t in changes) or 'no table'} swapped")
        _last_stats[url] = r.stats
        return database


def _run_table(r: Runner, mid: int, t: TableChange) -> None:
    state = _table_phase(r, mid, t.table)
    phase = state[0] if state else None
    if phase is None:
        if r.table_exists(t.old):
            raise MigrationError(
                f"{t.old} exists (left by an earlier change of {t.table}?); drop it or rename it"
            )
        r.create_shadow(t)
        _set_phase(r, mid, t.table, "shadow")
        phase = "shadow"
    if phase == "shadow":
        r.create_triggers(t)
        upper = r.bounds(t)
        r.execute(
            "UPDATE zerodown_osc SET phase = 'copying', upper_key = %s, cursor_key = NULL"
            " WHERE migration_id = %s AND table_name = %s",
            (encode_key(upper), mid, t.table),
        )
        phase = "copying"
    if phase == "copying":
        state = _table_phase(r, mid, t.table)
        assert state is not None

        def save(cursor: Any, rows: int) -> None:
            with r.conn.cursor() as cur:
                cur.execute(
                    "UPDATE zerodown_osc SET cursor_key = %s, rows_copied = rows_copied + %s"
                    " WHERE migration_id = %s AND table_name = %s",
                    (encode_key(cursor), rows, mid, t.table),
                )

        r.copy(t, state[1], state[2], save)
        _set_phase(r, mid, t.table, "copied")
        phase = "copied"
    if phase == "copied":
        r.swap(t)
        _set_phase(r, mid, t.table, "swapped")
        phase = "swapped"
    # the triggers moved with the old table, which nothing writes to any more
    r.drop_triggers(t)


def _active_changes(r: Runner, verb: str) -> tuple[dict[str, Any], list[TableChange], Migration]:
    active = _active(r)
    if active is None:
        raise MigrationError(f"no active migration to {verb}")
    definition = dict(active["definition"])
    allow = tuple(definition.pop("_allow", ()))
    m = Migration.model_validate(definition)
    changes: list[TableChange] = []
    for name in dict.fromkeys(str(getattr(op, "table", "")) for op in m.ops):
        state = _table_phase(r, active["id"], name)
        # no step recorded: a start killed while making the shadow (rollback still drops it)
        info = _table_info(r, t_old(name) if state and state[0] == "swapped" else name)
        if info is None:
            continue
        info = TableInfo(name, info.columns, info.primary_key, not_null=info.not_null)
        table_changes, _ = plan_tables(
            [op for op in m.ops if getattr(op, "table", None) == name], {name: info}, allow
        )
        changes.extend(table_changes)
    return active, changes, m


def t_old(table: str) -> str:
    return f"_zd_{table}_old"[:64]


def complete(url: str, *, options: MysqlOptions | None = None, log: Any = None) -> str:
    """Drop the old tables' copies; returns the migration's name."""
    with _session(url, options, log) as r:
        active, changes, _ = _active_changes(r, "complete")
        if active["phase"] != "started":
            raise MigrationError(
                f"the start of {active['name']} did not finish; run start again to resume it, "
                "or roll it back"
            )
        for t in changes:
            r.drop_triggers(t, keepers=True)  # the old version is gone: `up` is not needed
            r.ddl(f"DROP TABLE IF EXISTS {q(t.old)}")
        r.execute(
            "UPDATE zerodown_migrations SET phase = 'completed', finished_at = NOW() WHERE id = %s",
            (active["id"],),
        )
        return str(active["name"])


def rollback(url: str, *, options: MysqlOptions | None = None, log: Any = None) -> str:
    """Before the swap: drop shadow and triggers. After it: keep the new shape (see above)."""
    with _session(url, options, log) as r:
        active, changes, _ = _active_changes(r, "roll back")
        swapped = [
            t
            for t in changes
            if (s := _table_phase(r, active["id"], t.table)) and s[0] == "swapped"
        ]
        if swapped:
            broken = [b for t in swapped for b in t.breaking]
            if broken:
                raise MigrationError(
                    f"{active['name']} already swapped {', '.join(t.table for t in swapped)} and "
                    f"made a change the old version cannot use ({'; '.join(broken)}); roll "
                    "forward with a new migration"
                )
            return (
                f"{active['name']} stays started: {', '.join(t.table for t in swapped)} already "
                "has its new shape, which the old version works with"
            )
        for t in changes:
            r.drop_triggers(t, keepers=True)
            r.ddl(f"DROP TABLE IF EXISTS {q(t.shadow)}")
        r.execute(
            "UPDATE zerodown_migrations SET phase = 'rolled_back', finished_at = NOW()"
            " WHERE id = %s",
            (active["id"],),
        )
        return str(active["name"])


def status(url: str) -> dict[str, Any]:
    """The same shape as PostgreSQL's status: active migration, copy progress, history."""
    database = str(connect_args(url)["database"])
    empty: dict[str, Any] = {
        "base_schema": database,
        "active": None,
        "current_schema": database,
        "history": [],
        "versions": [],
    }
    with _connect(url) as conn:
        r = Runner(conn, MysqlOptions())
        if not r.table_exists("zerodown_migrations"):
            return empty
        history = [
            {
                "id": i,
                "name": n,
                "phase": p,
                "service": s,
                "version": v,
                "started_at": t.isoformat(),
                "version_schema": database,
                "unsafe": False,
            }
            for i, n, p, s, v, t in r.execute(
                "SELECT id, name, phase, service, version, started_at FROM zerodown_migrations"
                " ORDER BY id DESC LIMIT 50"
            )
        ]
        active = next((h for h in history if h["phase"] in ("starting", "started")), None)
        if active is not None:
            active = dict(active)
            active["backfills"] = [
                {
                    "table": t,
                    "step": p,
                    "rows": n,
                    "done": p in ("copied", "swapped"),
                    "cursor": c,
                }
                for t, p, n, c in r.execute(
                    "SELECT table_name, phase, rows_copied, cursor_key FROM zerodown_osc"
                    " WHERE migration_id = %s ORDER BY table_name",
                    (active["id"],),
                )
            ]
        return {**empty, "active": active, "history": history}


def pending(url: str, files: list[Path]) -> Path | None:
    with _connect(url) as conn:
        r = Runner(conn, MysqlOptions())
        done: set[str] = set()
        if r.table_exists("zerodown_migrations"):
            rows = r.execute("SELECT name FROM zerodown_migrations WHERE phase = 'completed'")
            done = {str(row[0]) for row in rows}
    for f in files:
        if load_migration(f).name not in done:
            return f
    return None
