"""drop_constraint: kept while the old version runs (it may rely on it), dropped at complete."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from ..schema import ident
from .base import DBAction, Name, OpBase, Schema, StartResult


class DropConstraint(OpBase):
    kind: ClassVar[str] = "drop_constraint"
    table: Name
    name: Name

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        if self.name not in table.constraints:
            known = ", ".join(table.constraints) or "none"
            raise self.fail(
                f"table {self.table!r} has no constraint {self.name!r} (constraints: {known})"
            )

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        kept = tuple(c for c in table.constraints if c != self.name)
        return StartResult(schema=schema.with_table(replace(table, constraints=kept)))

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        return (
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} DROP CONSTRAINT IF EXISTS {ident(self.name)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
