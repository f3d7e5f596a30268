"""drop_index: kept while the old version may rely on it, dropped CONCURRENTLY at complete."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from ..schema import ident
from .base import DBAction, Name, OpBase, Schema, StartResult


class DropIndex(OpBase):
    kind: ClassVar[str] = "drop_index"
    name: Name

    def validate_against(self, schema: Schema) -> None:
        if self.name not in schema.index_names():
            raise self.fail(f"no index named {self.name!r} in schema {schema.base!r}")

    def start(self, schema: Schema) -> StartResult:
        tables = tuple(
            replace(t, indexes=tuple(i for i in t.indexes if i != self.name)) for t in schema.tables
        )
        return StartResult(schema=replace(schema, tables=tables))

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        return (
            DBAction(
                f"DROP INDEX CONCURRENTLY IF EXISTS {ident(schema.base)}.{ident(self.name)}",
                locks="SHARE UPDATE EXCLUSIVE on its table (reads and writes go on)",
                transactional=False,
            ),
        )
