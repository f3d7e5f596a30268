"""Alembic revisions as zerodown migrations (`migrations: {alembic: alembic.ini}`).

Each pending revision's `upgrade()` runs against an `Operations` whose `invoke()` (Alembic's
public hook every `op.*` call goes through) records the operation object instead of running it.
No Python text is parsed and no SQL reaches the database: the recorded Alembic operations are
mapped onto zerodown operations with an expand-contract form, and the revision runs as one
zerodown migration tied to the rollout. Operations that would break the old version (a drop, raw
`op.execute`) are refused with the revision's file and line unless the spec allows them. When
the migration completes, Alembic's version table is stamped with the revision in the same
transaction (see `stamp_sql`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerodown.core.errors import SpecError

from .actions import MigrationError

ALLOWABLE = ("drop_column", "drop_table", "execute")
"""What a spec can allow: operations that break the old version or that zerodown cannot see."""


@dataclass(frozen=True)
class Recorded:
    op: Any  # an alembic.operations.ops.MigrateOperation
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class AlembicRefused(MigrationError):
    """A revision holds an operation zerodown will not run (the message says why and where)."""


def _alembic() -> Any:
    try:
        import alembic
    except ImportError:
        raise MigrationError(
            "`migrations: {alembic: …}` needs Alembic: pip install 'zerodown[alembic]'"
        ) from None
    return alembic


# reading revisions -----------------------------------------------------------------------------
def _script_directory(ini: Path) -> Any:
    _alembic()
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if not ini.is_file():
        raise SpecError("the Alembic configuration file does not exist", file=str(ini))
    try:
        return ScriptDirectory.from_config(Config(str(ini)))
    except CommandError as e:
        raise SpecError(f"Alembic cannot read it: {e}", file=str(ini)) from None


def record_upgrade(script: Any) -> list[Recorded]:
    """Run one revision's upgrade() with every op.* call recorded, not executed."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    path = str(Path(script.path).resolve())
    recorded: list[Recorded] = []

    def record(operation: Any) -> Any:
        line = 0
        frame: Any = sys._getframe(1)
        while frame is not None:
            if str(Path(frame.f_code.co_filename).resolve()) == path:
                line = frame.f_lineno
                break
            frame = frame.f_back
        recorded.append(Recorded(operation, script.path, line))

    # offline ("as_sql") context for PostgreSQL: nothing connects, nothing is emitted.
    # Operations.context installs the `from alembic import op` proxy the revision calls, as
    # Alembic does for env.py; every op.* builds its operation object and hands it to invoke().
    context = MigrationContext.configure(dialect_name="postgresql", opts={"as_sql": True})
    with Operations.context(context) as ops:
        ops.invoke = record  # type: ignore[method-assign]
        try:
            script.module.upgrade()
        except MigrationError:
            raise
        except Exception as e:
            raise MigrationError(
                f"{script.path}: upgrade() of revision {script.revision} failed while zerodown "
                f"read its operations: {type(e).__name__}: {e}"
            ) from None
    return recorded


# mapping ---------------------------------------------------------------------------------------
def _type_sql(type_: Any) -> str:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.sql.type_api import to_instance

    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(to_instance(type_).compile(dialect=dialect))


def _default_sql(default: Any) -> str | None:
    """server_default as SQL: a string is a literal, text() is SQL as written."""
    if default is None or default is False:
        return None
    if isinstance(default, str):
        return "'" + default.replace("'", "''") + "'"
    arg = getattr(default, "arg", default)  # a DefaultClause wraps the value
    if isinstance(arg, str):
        return "'" + arg.replace("'", "''") + "'"
    text = getattr(arg, "text", None)
    if isinstance(text, str):
        return text
    return str(arg)


def _column(col: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": col.name, "type": _type_sql(col.type)}
    if col.primary_key:
        out["primary_key"] = True
    if not col.nullable and not col.primary_key:
        out["nullable"] = False
    default = _default_sql(col.server_default)
    if default is not None:
        out["default"] = default
    if col.unique:
        out["unique"] = True
    fks = list(col.foreign_keys)
    if fks:
        fk = fks[0]
        table, _, column = fk.target_fullname.rpartition(".")
        ref: dict[str, Any] = {"table": table.rpartition(".")[2], "column": column}
        if fk.ondelete:
            ref["on_delete"] = fk.ondelete.upper()
        out["references"] = ref
    return out


def _refuse(rec: Recorded, message: str) -> AlembicRefused:
    return AlembicRefused(f"{rec.where}: {message}")


def _map_one(rec: Recorded, allow: Iterable[str]) -> list[dict[str, Any]]:
    from alembic.operations import ops as a

    op = rec.op
    allowed = set(allow)
    if getattr(op, "schema", None) not in (None, "public"):
        raise _refuse(rec, f"schema {op.schema!r}: zerodown migrates one base schema (public)")
    if isinstance(op, a.AddColumnOp):
        return [{"add_column": {"table": op.table_name, "column": _column(op.column)}}]
    if isinstance(op, a.AlterColumnOp):
        return _alter(rec, op)
    if isinstance(op, a.CreateTableOp):
        return [{"create_table": {"table": op.table_name, "columns": _table_columns(rec, op)}}]
    if isinstance(op, a.CreateIndexOp):
        return [{"create_index": _index(rec, op)}]
    if isinstance(op, a.DropIndexOp):
        return [{"drop_index": {"name": op.index_name}}]
    if isinstance(op, a.CreateForeignKeyOp):
        if len(op.remote_cols) != 1:
            raise _refuse(rec, "a foreign key over several columns has no zerodown form yet")
        ref: dict[str, Any] = {"table": op.referent_table, "column": op.remote_cols[0]}
        if op.kw.get("ondelete"):
            ref["on_delete"] = str(op.kw["ondelete"]).upper()
        return [
            {
                "add_constraint": {
                    "table": op.source_table,
                    "name": _named(rec, op.constraint_name),
                    "foreign_key": {"columns": list(op.local_cols), "references": ref},
                }
            }
        ]
    if isinstance(op, a.CreateUniqueConstraintOp):
        return [
            {
                "add_constraint": {
                    "table": op.table_name,
                    "name": _named(rec, op.constraint_name),
                    "unique": list(op.columns),
                }
            }
        ]
    if isinstance(op, a.CreateCheckConstraintOp):
        return [
            {
                "add_constraint": {
                    "table": op.table_name,
                    "name": _named(rec, op.constraint_name),
                    "check": _sql_text(op.condition),
                }
            }
        ]
    if isinstance(op, a.DropConstraintOp):
        return [{"drop_constraint": {"table": op.table_name, "name": op.constraint_name}}]
    if isinstance(op, a.RenameTableOp):
        return [{"rename_table": {"from": op.table_name, "to": op.new_table_name}}]
    if isinstance(op, a.DropColumnOp):
        if "drop_column" not in allowed:
            raise _refuse(
                rec,
                f"drop_column {op.table_name}.{op.column_name} breaks the old version once "
                "contracted and cannot be undone; allow it with `migrations: {allow: "
                "[drop_column]}` (it is hidden from the new version at start and dropped at "
                "complete)",
            )
        return [{"drop_column": {"table": op.table_name, "column": op.column_name}}]
    if isinstance(op, a.DropTableOp):
        if "drop_table" not in allowed:
            raise _refuse(
                rec,
                f"drop_table {op.table_name} cannot be undone once contracted; allow it with "
                "`migrations: {allow: [drop_table]}`",
            )
        return [{"drop_table": {"table": op.table_name}}]
    if isinstance(op, a.ExecuteSQLOp):
        if "execute" not in allowed:
            raise _refuse(
                rec,
                "op.execute runs raw SQL zerodown cannot see (it may break the old version); "
                "write it as an operation, or allow it with `migrations: {allow: [execute]}` "
                "(it then runs alone in its revision, marked unsafe)",
            )
        return [{"raw_sql": {"sql": _sql_text(op.sqltext)}}]
    name = type(op).__name__.removesuffix("Op")
    raise _refuse(rec, f"Alembic operation {name} has no expand-contract form in zerodown")


def _named(rec: Recorded, name: Any) -> str:
    if not name:
        raise _refuse(rec, "give the constraint a name (zerodown adds and drops it by name)")
    return str(name)


def _sql_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else str(value)


def _alter(rec: Recorded, op: Any) -> list[dict[str, Any]]:
    changes: dict[str, Any] = {}
    if op.modify_type is not None:
        changes["type"] = _type_sql(op.modify_type)
    if op.modify_nullable is not None:
        changes["nullable"] = op.modify_nullable
    if op.modify_server_default is not False:
        default = _default_sql(op.modify_server_default)
        if default is None:
            raise _refuse(rec, "dropping a server default has no expand-contract form yet")
        changes["default"] = default
    using = op.kw.get("postgresql_using")
    if using:
        changes["up"] = str(using)
    if op.modify_comment is not False:
        raise _refuse(rec, "comments are not migrated by zerodown; set them with raw SQL")
    if op.modify_name and not changes:
        return [
            {
                "rename_column": {
                    "table": op.table_name,
                    "from": op.column_name,
                    "to": op.modify_name,
                }
            }
        ]
    if op.modify_name:
        changes["name"] = op.modify_name
    if not changes:
        raise _refuse(rec, "alter_column changes nothing zerodown knows")
    return [{"alter_column": {"table": op.table_name, "column": op.column_name, **changes}}]


def _table_columns(rec: Recorded, op: Any) -> list[dict[str, Any]]:
    from sqlalchemy import Column, PrimaryKeyConstraint

    columns = [_column(c) for c in op.columns if isinstance(c, Column)]
    keys = [c for c in op.columns if isinstance(c, Column) and c.primary_key]
    if len(keys) == 1 and keys[0].autoincrement in (True, "auto"):
        # SQLAlchemy makes a lone integer primary key SERIAL on PostgreSQL: so does zerodown
        serial = {"INTEGER": "serial", "BIGINT": "bigserial", "SMALLINT": "smallserial"}
        for col in columns:
            if col["name"] == keys[0].name and col["type"] in serial:
                col["type"] = serial[col["type"]]
    for c in op.columns:
        if isinstance(c, PrimaryKeyConstraint):
            names = {col.name for col in c.columns} | set(getattr(c, "_pending_colargs", []))
            for col in columns:
                if col["name"] in names:
                    col["primary_key"] = True
                    col.pop("nullable", None)
        elif not isinstance(c, Column):
            # named constraints in create_table: the table is new, so they could be inline, but
            # zerodown's create_table takes them per column only
            raise _refuse(
                rec,
                f"create_table {op.table_name}: table-level {type(c).__name__} has no zerodown "
                "form; declare it on the column (unique=True, ForeignKey) or add it after",
            )
    return columns


def _index(rec: Recorded, op: Any) -> dict[str, Any]:
    columns = []
    for c in op.columns:
        if not isinstance(c, str):
            raise _refuse(rec, "an index on expressions has no zerodown form yet; use columns")
        columns.append(c)
    out: dict[str, Any] = {
        "name": _named(rec, op.index_name),
        "table": op.table_name,
        "columns": columns,
    }
    if op.unique:
        out["unique"] = True
    where = op.kw.get("postgresql_where")
    if where is not None:
        out["where"] = _sql_text(where)
    method = op.kw.get("postgresql_using")
    if method:
        out["method"] = str(method)
    return out


# revisions -> migrations -----------------------------------------------------------------------
def migration_name(revision: str) -> str:
    return "alembic_" + re.sub(r"[^a-z0-9_]", "_", revision.lower())[:32]


def to_migration(script: Any, allow: Iterable[str] = ()) -> Any:
    """The zerodown Migration for one Alembic revision (refuses what it must)."""
    from .model import Migration

    recorded = record_upgrade(script)
    if not recorded:
        raise MigrationError(f"{script.path}: revision {script.revision} has no operation")
    operations: list[dict[str, Any]] = []
    for rec in recorded:
        operations.extend(_map_one(rec, allow))
    kinds = {next(iter(o)) for o in operations}
    if "raw_sql" in kinds and len(operations) > 1:
        first = next(r for r in recorded if type(r.op).__name__ == "ExecuteSQLOp")
        raise _refuse(
            first,
            "op.execute must be alone in its revision (zerodown cannot see what it changes); "
            "move it to a revision of its own",
        )
    down = script.down_revision
    if isinstance(down, tuple | list):
        raise MigrationError(f"{script.path}: merge revisions are not supported yet")
    data = {
        "name": migration_name(script.revision),
        "operations": operations,
        "alembic": {"revision": script.revision, "down_revision": down},
    }
    try:
        return Migration.model_validate(data)
    except Exception as e:  # pydantic's message names the field
        raise MigrationError(f"{script.path}: cannot express revision as zerodown: {e}") from None


def current_heads(conn: Any, version_table: str = "alembic_version") -> list[str]:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (version_table,)).fetchone()
    if not row or not row[0]:
        return []
    return [r[0] for r in conn.execute(f'SELECT version_num FROM "{version_table}"').fetchall()]


def pending_revisions(ini: Path, heads: list[str]) -> list[Any]:
    """The revisions after the database's head, oldest first."""
    scripts = _script_directory(ini)
    if len(scripts.get_heads()) > 1:
        raise SpecError(
            "the Alembic history has several heads; merge them (alembic merge) first",
            file=str(ini),
        )
    if len(heads) > 1:
        raise MigrationError("the database's alembic_version holds several heads")
    lower = heads[0] if heads else None
    revs = list(scripts.iterate_revisions("heads", lower))
    return list(reversed(revs))


def all_migrations(ini: Path) -> list[Any]:
    """Every revision as a migration, oldest first, everything allowed: for the risk of a
    contract (migrations/risk.py), which follows column types from the first revision on.
    Revisions with no zerodown form are left out (they are refused when they are pending)."""
    scripts = _script_directory(ini)
    out = []
    for script in reversed(list(scripts.walk_revisions())):
        try:
            out.append(to_migration(script, ALLOWABLE))
        except MigrationError:
            continue
    return out


def stamp_sql(revision: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Statements that leave `revision` the one head in alembic_version (a linear history)."""
    return [
        (
            "CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
            (),
        ),
        ("DELETE FROM alembic_version", ()),
        ("INSERT INTO alembic_version (version_num) VALUES (%s)", (revision,)),
    ]
