"""rename_table: the new version's view carries the new name; the table is renamed at complete."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from pydantic import Field

from ..schema import ident
from .base import DBAction, Name, OpBase, Schema, StartResult


class RenameTable(OpBase):
    kind: ClassVar[str] = "rename_table"
    from_: Name = Field(alias="from")
    to: Name

    def validate_against(self, schema: Schema) -> None:
        self.need_table(schema, self.from_)
        if schema.has_table(self.to) or any(t.phys == self.to for t in schema.tables):
            raise self.fail(f"cannot rename {self.from_!r} to {self.to!r}: {self.to!r} exists")

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.from_)
        renamed = replace(table, name=self.to, physical=table.phys)
        tables = tuple(renamed if t.name == self.from_ else t for t in schema.tables)
        return StartResult(schema=replace(schema, tables=tables))

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.from_)
        if table.phys == self.to:
            return ()
        return (
            DBAction(
                f"ALTER TABLE IF EXISTS {schema.qualified(table)} RENAME TO {ident(self.to)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
