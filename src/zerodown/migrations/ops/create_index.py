"""create_index: built CONCURRENTLY (writes go on); an invalid leftover is dropped and rebuilt."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..schema import ident
from .base import DBAction, Name, OpBase, Schema, SqlExpr, StartResult, index_exists


class CreateIndex(OpBase):
    kind: ClassVar[str] = "create_index"
    name: Name
    table: Name
    columns: Annotated[list[Name], Field(min_length=1)]
    unique: bool = False
    method: Literal["btree", "hash", "gin", "gist", "brin", "spgist"] = "btree"
    where: SqlExpr | None = None

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        for c in self.columns:
            self.need_column(table, c)
        if self.name in schema.index_names():
            raise self.fail(f"an index named {self.name!r} already exists")

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        cols = ", ".join(ident(self.need_column(table, c).phys) for c in self.columns)
        unique = "UNIQUE " if self.unique else ""
        sql = (
            f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {ident(self.name)} ON "
            f"{schema.qualified(table)} USING {self.method} ({cols})"
        )
        if self.where:
            sql += f" WHERE {self.where}"
        action = DBAction(
            sql,
            locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (reads and writes go on)",
            transactional=False,
            index=self.name,
            skip_if=index_exists(schema, self.name),
        )
        new_table = replace(table, indexes=(*table.indexes, self.name))
        return StartResult(schema=schema.with_table(new_table), actions=(action,))

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        return (
            DBAction(
                f"DROP INDEX CONCURRENTLY IF EXISTS {ident(schema.base)}.{ident(self.name)}",
                locks=f"SHARE UPDATE EXCLUSIVE on {self.table} (reads and writes go on)",
                transactional=False,
            ),
        )
