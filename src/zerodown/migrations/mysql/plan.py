"""What an online schema change does to one table, as data (pure: no connection).

A migration's operations are grouped by table. Each table gets a *shadow* `_zd_<t>_new` (a copy
of its definition with the changes applied), three triggers that keep it in sync with the
original, a batched copy and an atomic `RENAME TABLE` swap (see osc.py). The mapping from the
original's columns to the shadow's is one list: (shadow column, SQL over the original's columns);
the copy selects the expressions plainly, the triggers over `NEW.`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..actions import MigrationError
from ..ops import AddColumn, AlterColumn, CreateIndex, CreateTable, OpBase, RenameColumn

SUPPORTED = ("add_column", "alter_column", "rename_column", "create_index", "create_table")
BREAKING = ("rename_column",)
"""Operations after whose swap the old version's statements fail: refused unless allowed."""


class MysqlRefused(MigrationError):
    """An operation zerodown cannot run as an online schema change on MySQL/MariaDB."""


def q(name: str) -> str:
    """A MySQL identifier, quoted."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class TableInfo:
    """What osc.py reads from information_schema about a table."""

    name: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    has_triggers: bool = False
    foreign_keys: tuple[str, ...] = ()  # constraints on it or pointing at it
    not_null: tuple[str, ...] = ()


@dataclass
class TableChange:
    table: str
    alter: list[str] = field(default_factory=list)  # clauses for ALTER TABLE shadow
    mapping: dict[str, str] = field(default_factory=dict)  # shadow column -> SQL over original
    pk: str = ""
    breaking: list[str] = field(default_factory=list)
    source_columns: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    keep: dict[str, str] = field(default_factory=dict)  # added column -> its `up`

    @property
    def shadow(self) -> str:
        return f"_zd_{self.table}_new"[:64]

    @property
    def old(self) -> str:
        return f"_zd_{self.table}_old"[:64]

    def trigger(self, event: str) -> str:
        return f"_zd_{self.table}_{event}"[:64]

    def copy_sql(self) -> str:
        """One batch: the rows in (cursor, upper]; IGNORE keeps what a trigger already wrote."""
        cols = ", ".join(q(c) for c in self.mapping)
        exprs = ", ".join(self.mapping.values())
        return (
            f"INSERT IGNORE INTO {q(self.shadow)} ({cols}) SELECT {exprs} FROM {q(self.table)}"
            f" FORCE INDEX (PRIMARY) WHERE {q(self.pk)} > %s AND {q(self.pk)} <= %s"
            " LOCK IN SHARE MODE"
        )

    def lock_sql(self) -> str:
        """Run first in the batch's transaction: lock the source rows before the copy touches
        the shadow. INSERT … SELECT holds the shadow's table-level AUTO-INC lock for the whole
        statement; if it still had source rows to lock, an app write holding one of them whose
        trigger waits for that AUTO-INC lock would deadlock with it (and the app's one-row
        transaction would be the victim)."""
        return (
            f"SELECT {q(self.pk)} FROM {q(self.table)} FORCE INDEX (PRIMARY)"
            f" WHERE {q(self.pk)} > %s AND {q(self.pk)} <= %s LOCK IN SHARE MODE"
        )

    def keeper_sql(self) -> list[tuple[str, str]]:
        """BEFORE triggers on the shadow (they move with the swap) that keep an added column
        filled by `up` for the old version's writes until complete: an insert that leaves it
        NULL, an update that does not set it. They only set NEW, so they may sit on the table
        the sync triggers write into."""
        if not self.keep:
            return []
        cols = tuple(self.mapping)
        ins = "; ".join(
            f"IF NEW.{q(c)} IS NULL THEN SET NEW.{q(c)} = {over_row(e, 'NEW', cols)}; END IF"
            for c, e in self.keep.items()
        )
        upd = "; ".join(
            f"IF NEW.{q(c)} <=> OLD.{q(c)} THEN SET NEW.{q(c)} = {over_row(e, 'NEW', cols)}; END IF"
            for c, e in self.keep.items()
        )
        shadow = q(self.shadow)
        return [
            (
                self.trigger("kins"),
                f"CREATE TRIGGER {q(self.trigger('kins'))} BEFORE INSERT ON {shadow}"
                f" FOR EACH ROW BEGIN {ins}; END",
            ),
            (
                self.trigger("kupd"),
                f"CREATE TRIGGER {q(self.trigger('kupd'))} BEFORE UPDATE ON {shadow}"
                f" FOR EACH ROW BEGIN {upd}; END",
            ),
        ]

    def trigger_sql(self) -> list[tuple[str, str]]:
        """(name, CREATE TRIGGER) for insert, update and delete on the original."""
        cols = ", ".join(q(c) for c in self.mapping)
        new_vals = ", ".join(over_row(e, "NEW", self.source_columns) for e in self.mapping.values())
        pk, shadow, table = q(self.pk), q(self.shadow), q(self.table)
        replace = f"REPLACE INTO {shadow} ({cols}) VALUES ({new_vals})"
        delete_old = f"DELETE IGNORE FROM {shadow} WHERE {shadow}.{pk} <=> OLD.{pk}"
        return [
            (
                self.trigger("ins"),
                f"CREATE TRIGGER {q(self.trigger('ins'))} AFTER INSERT ON {table}"
                f" FOR EACH ROW {replace}",
            ),
            (
                self.trigger("upd"),
                # a changed key leaves the old key's row behind: delete it first
                f"CREATE TRIGGER {q(self.trigger('upd'))} AFTER UPDATE ON {table} FOR EACH ROW"
                f" BEGIN IF NOT (OLD.{pk} <=> NEW.{pk}) THEN {delete_old}; END IF; {replace}; END",
            ),
            (
                self.trigger("del"),
                f"CREATE TRIGGER {q(self.trigger('del'))} AFTER DELETE ON {table}"
                f" FOR EACH ROW {delete_old}",
            ),
        ]


_TOKENS = re.compile(r"'(?:[^'\\]|\\.|'')*'|`((?:[^`]|``)*)`|([A-Za-z_][A-Za-z0-9_$]*)")


def over_row(expr: str, row: str, columns: tuple[str, ...]) -> str:
    """`lower(email)` -> `lower(NEW.`email`)` for the original's columns (strings untouched)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1).replace("``", "`") if m.group(1) is not None else m.group(2)
        if name is not None and name in columns:
            return f"{row}.{q(name)}"
        return m.group(0)

    return _TOKENS.sub(sub, expr)


def _column_sql(name: str, type_: str, nullable: bool, default: str | None) -> str:
    out = f"{q(name)} {type_}"
    out += "" if nullable else " NOT NULL"
    if default is not None:
        out += f" DEFAULT {default}"
    return out


def plan_tables(
    ops: list[OpBase], tables: dict[str, TableInfo], allow: tuple[str, ...] = ()
) -> tuple[list[TableChange], list[CreateTable]]:
    """Group operations by table into online schema changes; refuse what cannot be done."""
    changes: dict[str, TableChange] = {}
    creates: list[CreateTable] = []

    def change_for(op: OpBase, name: str) -> TableChange:
        info = tables.get(name)
        if info is None:
            raise MysqlRefused(f"{op.kind}: table {name!r} does not exist")
        if name not in changes:
            if len(info.primary_key) != 1:
                raise MysqlRefused(
                    f"{op.kind}: table {name!r} needs a single-column primary key for the "
                    "batched copy and the triggers (it has "
                    f"{', '.join(info.primary_key) or 'none'})"
                )
            if info.has_triggers:
                raise MysqlRefused(
                    f"{op.kind}: table {name!r} already has triggers; the online schema change "
                    "adds its own and would run theirs twice on the copy: drop them first"
                )
            if info.foreign_keys:
                raise MysqlRefused(
                    f"{op.kind}: table {name!r} has foreign keys "
                    f"({', '.join(info.foreign_keys)}); a RENAME swap would leave them "
                    "pointing at the old table: drop them first, or use pt-online-schema-change"
                    " --alter-foreign-keys-method"
                )
            changes[name] = TableChange(
                table=name,
                mapping={c: q(c) for c in info.columns},
                pk=info.primary_key[0],
                source_columns=info.columns,
                not_null=info.not_null,
            )
        return changes[name]

    for op in ops:
        if isinstance(op, CreateTable):
            creates.append(op)
        elif isinstance(op, AddColumn):
            t = change_for(op, op.table)
            c = op.column
            if c.primary_key or c.references or c.check:
                raise MysqlRefused(
                    "add_column: primary_key, references and check are not supported on MySQL"
                )
            if not c.nullable and c.default is None and op.up is None:
                raise MysqlRefused(
                    f"add_column {op.table}.{c.name}: NOT NULL without a default or `up` breaks "
                    "the old version's inserts (it does not know the column): give a default"
                )
            t.alter.append("ADD COLUMN " + _column_sql(c.name, c.type, c.nullable, c.default))
            if c.unique:
                t.alter.append(f"ADD UNIQUE KEY {q(c.name + '_key')} ({q(c.name)})")
            if op.up is not None:
                t.mapping[c.name] = op.up
                t.keep[c.name] = op.up
        elif isinstance(op, AlterColumn):
            t = change_for(op, op.table)
            _alter(op, t, allow)
        elif isinstance(op, RenameColumn):
            t = change_for(op, op.table)
            if op.from_ not in t.mapping:
                raise MysqlRefused(f"rename_column: {op.table} has no column {op.from_!r}")
            _rename(op.kind, t, op.from_, op.to, allow)
            t.alter.append(f"RENAME COLUMN {q(op.from_)} TO {q(op.to)}")
        elif isinstance(op, CreateIndex):
            t = change_for(op, op.table)
            if op.where or op.method != "btree":
                raise MysqlRefused("create_index: partial and non-btree indexes are PostgreSQL's")
            cols = ", ".join(q(c) for c in op.columns)
            t.alter.append(f"ADD {'UNIQUE ' if op.unique else ''}INDEX {q(op.name)} ({cols})")
        else:
            raise MysqlRefused(
                f"{op.kind} is not run on MySQL/MariaDB by zerodown (it runs {', '.join(SUPPORTED)}"
                " as online schema changes); run it yourself"
            )
    return list(changes.values()), creates


def _rename(kind: str, t: TableChange, old: str, new: str, allow: tuple[str, ...]) -> None:
    if "rename_column" not in allow:
        raise MysqlRefused(
            f"{kind} {t.table}.{old} -> {new}: on MySQL the old version's statements that name "
            f"{old!r} fail from the moment the tables are swapped (there is no schema of views "
            "per version); allow it with `allow: [rename_column]` (the old version must not use "
            "the column) or add a new column and drop the old one in a later release"
        )
    t.mapping[new] = t.mapping.pop(old)
    t.breaking.append(f"{t.table}.{old} renamed to {new}")


def _alter(op: AlterColumn, t: TableChange, allow: tuple[str, ...]) -> None:
    if op.check or op.unique is not None or op.references or op.down or op.up:
        raise MysqlRefused(
            f"alter_column {op.table}.{op.column}: only name, type, nullable and default are "
            "supported on MySQL (after the swap both versions write the one column, so a "
            "conversion `up` would hold for the copied rows only: add a new column instead)"
        )
    if op.column not in t.mapping:
        raise MysqlRefused(f"alter_column: {op.table} has no column {op.column!r}")
    if op.type is None and (op.nullable is not None or op.default is not None):
        raise MysqlRefused(
            f"alter_column {op.table}.{op.column}: give the column's `type` too (MySQL's MODIFY "
            "restates the whole column)"
        )
    final = op.name or op.column
    if op.name:
        _rename(op.kind, t, op.column, op.name, allow)
    if op.type is not None:
        nullable = op.nullable if op.nullable is not None else op.column not in t.not_null
        t.alter.append(
            f"CHANGE COLUMN {q(op.column)} " + _column_sql(final, op.type, nullable, op.default)
        )
    elif op.name:
        t.alter.append(f"RENAME COLUMN {q(op.column)} TO {q(op.name)}")
