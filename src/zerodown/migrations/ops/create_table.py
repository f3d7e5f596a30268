"""create_table: a new table is invisible to the old version, so it is created in one step."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from ..schema import Column, Table, ident
from .base import ColumnDef, DBAction, Name, OpBase, Schema, StartResult, references_sql


class CreateTable(OpBase):
    kind: ClassVar[str] = "create_table"
    table: Name
    columns: Annotated[list[ColumnDef], Field(min_length=1)]

    def validate_against(self, schema: Schema) -> None:
        if schema.has_table(self.table) or any(t.phys == self.table for t in schema.tables):
            raise self.fail(f"table {self.table!r} already exists")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise self.fail(f"table {self.table!r} lists column(s) {', '.join(dupes)} twice")
        for c in self.columns:
            if c.references is not None:
                references_sql(schema, c.references, self)

    def _column_sql(self, schema: Schema, c: ColumnDef) -> str:
        parts = [ident(c.name), c.type]
        if not c.nullable and not c.primary_key:
            parts.append("NOT NULL")
        if c.default is not None:
            parts.append(f"DEFAULT {c.default}")
        if c.unique:
            parts.append("UNIQUE")
        if c.check is not None:
            parts.append(f"CHECK ({c.check})")
        if c.references is not None:
            parts.append(references_sql(schema, c.references, self))
        return " ".join(parts)

    def start(self, schema: Schema) -> StartResult:
        cols = [self._column_sql(schema, c) for c in self.columns]
        pk = [c.name for c in self.columns if c.primary_key]
        if pk:
            cols.append(f"PRIMARY KEY ({', '.join(ident(k) for k in pk)})")
        sql = f"CREATE TABLE IF NOT EXISTS {schema.qualified(self.table)} (\n  "
        sql += ",\n  ".join(cols) + "\n)"
        table = Table(
            name=self.table,
            columns=tuple(
                Column(c.name, c.type, nullable=c.nullable and not c.primary_key, default=c.default)
                for c in self.columns
            ),
            primary_key=tuple(pk),
        )
        action = DBAction(sql, locks="none on existing tables (new, empty table)")
        return StartResult(schema=schema.with_table(table), actions=(action,))

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        return (
            DBAction(
                f"DROP TABLE IF EXISTS {schema.qualified(self.table)}",
                locks=f"ACCESS EXCLUSIVE on {self.table} (only the new version used it)",
            ),
        )
