"""drop_table: hidden from the new version at start, dropped at complete."""

from __future__ import annotations

from typing import ClassVar

from .base import DBAction, Name, OpBase, Schema, StartResult


class DropTable(OpBase):
    kind: ClassVar[str] = "drop_table"
    table: Name

    def validate_against(self, schema: Schema) -> None:
        self.need_table(schema, self.table)

    def start(self, schema: Schema) -> StartResult:
        return StartResult(schema=schema.without_table(self.table))

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        return (
            DBAction(
                f"DROP TABLE IF EXISTS {schema.qualified(table)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
