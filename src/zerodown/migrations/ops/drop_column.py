"""drop_column: hidden from the new version at start; its `down` fills it for the old version."""

from __future__ import annotations

from typing import ClassVar

from ..schema import ident
from ..triggers import Assign, TriggerSpec
from .base import DBAction, Name, OpBase, Schema, SqlExpr, StartResult, trigger_name


class DropColumn(OpBase):
    kind: ClassVar[str] = "drop_column"
    table: Name
    column: Name
    down: SqlExpr | None = None

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        col = self.need_unchanged(table, self.column)
        if self.column in table.primary_key:
            raise self.fail(f"cannot drop {self.column!r}: it is in the primary key")
        if not col.nullable and col.default is None and self.down is None:
            raise self.fail(
                f"column {self.column!r} is NOT NULL without a default: the new version's "
                "inserts would fail until complete; give `down` (SQL computing it for the old "
                "version from the new version's columns)"
            )

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        col = self.need_column(table, self.column)
        new_table = table.without_column(self.column)
        triggers: tuple[TriggerSpec, ...] = ()
        if self.down is not None:
            triggers = (
                TriggerSpec(
                    name=trigger_name(schema, table.phys, col.phys),
                    base=schema.base,
                    version_schema=schema.version_schema,
                    old_table=table,
                    new_table=new_table,
                    new_writes=(Assign(col.phys, self.down),),
                ),
            )
        return StartResult(schema=schema.with_table(new_table), triggers=triggers)

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        col = self.need_column(table, self.column)
        return (
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} DROP COLUMN IF EXISTS {ident(col.phys)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
