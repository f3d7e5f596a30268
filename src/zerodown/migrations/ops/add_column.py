"""add_column: added so old rows and the old version's writes get a value (default or `up`).

A literal default is added in place (PostgreSQL 11+ stores it without rewriting the table). Any
other default is set separately so it applies to new rows only, and existing rows are filled by
the batched backfill. NOT NULL without a literal default goes in as a CHECK … NOT VALID, is
validated after the backfill, and becomes a real NOT NULL at complete (PostgreSQL 12+ then skips
the table scan because the validated check proves it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from ..schema import Column, ident
from ..triggers import Assign, TriggerSpec
from .base import (
    Backfill_,
    ColumnDef,
    DBAction,
    Name,
    OpBase,
    Schema,
    SqlExpr,
    StartResult,
    constraint_exists,
    index_exists,
    is_constant,
    references_sql,
    short_name,
    trigger_name,
)


class AddColumn(OpBase):
    kind: ClassVar[str] = "add_column"
    table: Name
    column: ColumnDef
    up: SqlExpr | None = None

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        name = self.column.name
        if table.has_column(name) or any(c.phys == name for c in table.columns):
            raise self.fail(f"table {self.table!r} already has a column {name!r}")
        if self.column.primary_key:
            raise self.fail("cannot add a primary key column to an existing table")
        if not self.column.nullable and self.column.default is None and self.up is None:
            raise self.fail(
                f"column {name!r} is NOT NULL but has neither `default` nor `up`: the existing "
                "rows and the old version's inserts would have no value; add one of them"
            )
        if self.column.references is not None:
            references_sql(schema, self.column.references, self)
        if self._needs_backfill():
            self.need_pk(table)

    def _fast(self) -> bool:
        """Added in one statement with its default, no backfill needed."""
        return self.up is None and (self.column.default is None or is_constant(self.column.default))

    def _needs_backfill(self) -> bool:
        return not self._fast()

    def _names(self) -> tuple[str, str, str, str]:
        t, c = self.table, self.column.name
        return (
            short_name("_zd", t, c, "notnull"),
            short_name(t, c, "check"),
            short_name(t, c, "fkey"),
            short_name(t, c, "key"),
        )

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        col = self.column
        qt = schema.qualified(table)
        notnull, check, fkey, key = self._names()
        acts: list[DBAction] = []
        after: list[DBAction] = []
        triggers: tuple[TriggerSpec, ...] = ()
        backfills: tuple[Backfill_, ...] = ()
        add_lock = f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only: no rewrite)"
        if self._fast():
            sql = f"ALTER TABLE {qt} ADD COLUMN IF NOT EXISTS {ident(col.name)} {col.type}"
            if col.default is not None:
                sql += f" DEFAULT {col.default}"
            if not col.nullable:
                sql += " NOT NULL"
            acts.append(DBAction(sql, locks=add_lock))
        else:
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD COLUMN IF NOT EXISTS {ident(col.name)} {col.type}",
                    locks=add_lock,
                )
            )
            if col.default is not None:
                acts.append(
                    DBAction(
                        f"ALTER TABLE {qt} ALTER COLUMN {ident(col.name)} SET DEFAULT "
                        f"{col.default}",
                        locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, new rows only)",
                    )
                )
            fill = (
                Assign(col.name, self.up)
                if self.up is not None
                else Assign(col.name, str(col.default), only_if_null=True)
            )
            new_table = table.with_column(Column(col.name, col.type, True, col.default))
            triggers = (
                TriggerSpec(
                    name=trigger_name(schema, table.phys, col.name),
                    base=schema.base,
                    version_schema=schema.version_schema,
                    old_table=table,
                    new_table=new_table,
                    old_writes=(fill,),
                ),
            )
            backfills = (
                Backfill_(table.phys, tuple((c.phys, c.type) for c in table.physical_pk())),
            )
            if not col.nullable:
                after.append(
                    DBAction(
                        f"ALTER TABLE {qt} ADD CONSTRAINT {ident(notnull)} CHECK "
                        f"({ident(col.name)} IS NOT NULL) NOT VALID",
                        locks=f"ACCESS EXCLUSIVE on {table.phys} (brief: NOT VALID, no scan)",
                        skip_if=constraint_exists(schema, table.phys, notnull),
                    )
                )
                after.append(self._validate(schema, table.phys, notnull))
        if col.check is not None:
            after.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(check)} CHECK ({col.check}) NOT VALID",
                    locks=f"ACCESS EXCLUSIVE on {table.phys} (brief: NOT VALID, no scan)",
                    skip_if=constraint_exists(schema, table.phys, check),
                )
            )
            after.append(self._validate(schema, table.phys, check))
        if col.references is not None:
            after.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(fkey)} FOREIGN KEY "
                    f"({ident(col.name)}) {references_sql(schema, col.references, self)} NOT VALID",
                    locks=f"SHARE ROW EXCLUSIVE on {table.phys} and {col.references.table} (brief)",
                    skip_if=constraint_exists(schema, table.phys, fkey),
                )
            )
            after.append(self._validate(schema, table.phys, fkey))
        if col.unique:
            after.append(
                DBAction(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {ident(key)} ON {qt} "
                    f"({ident(col.name)})",
                    locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (reads and writes go on)",
                    transactional=False,
                    index=key,
                    skip_if=index_exists(schema, key),
                )
            )
        new_col = Column(col.name, col.type, col.nullable, col.default)
        new_table = table.with_column(new_col)
        if col.unique:
            new_table = replace(new_table, indexes=(*new_table.indexes, key))
        return StartResult(
            schema=schema.with_table(new_table),
            actions=tuple(acts),
            backfills=backfills,
            after_backfill=tuple(after),
            triggers=triggers,
        )

    @staticmethod
    def _validate(schema: Schema, table_phys: str, name: str) -> DBAction:
        return DBAction(
            f"ALTER TABLE {schema.qualified(table_phys)} VALIDATE CONSTRAINT {ident(name)}",
            locks=f"SHARE UPDATE EXCLUSIVE on {table_phys} (scans; reads and writes go on)",
        )

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        if self._fast() or self.column.nullable:
            return ()
        qt = schema.qualified(table)
        notnull = self._names()[0]
        return (
            DBAction(
                f"ALTER TABLE {qt} ALTER COLUMN {ident(self.column.name)} SET NOT NULL",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief: the validated check skips the scan)",
            ),
            DBAction(
                f"ALTER TABLE {qt} DROP CONSTRAINT IF EXISTS {ident(notnull)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        return (
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} DROP COLUMN IF EXISTS "
                f"{ident(self.column.name)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
