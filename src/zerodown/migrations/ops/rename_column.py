"""rename_column: the new version's view shows the new name; the column is renamed at complete."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..schema import ident
from .base import DBAction, Name, OpBase, Schema, StartResult, column_exists


class RenameColumn(OpBase):
    kind: ClassVar[str] = "rename_column"
    table: Name
    from_: Name = Field(alias="from")
    to: Name

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        self.need_unchanged(table, self.from_)
        if table.has_column(self.to) or any(c.phys == self.to for c in table.columns):
            raise self.fail(f"table {self.table!r} already has a column {self.to!r}")

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        return StartResult(schema=schema.with_table(table.renamed_column(self.from_, self.to)))

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        column = self.need_column(table, self.from_)
        if column.phys == self.to:
            return ()
        return (
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} RENAME COLUMN {ident(column.phys)}"
                f" TO {ident(self.to)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
                skip_if=column_exists(schema, table.phys, self.to),
            ),
        )
