"""raw_sql: allowed, but zerodown cannot see what it does: it is linted and marked unsafe.

It runs at start (or at complete with `on_complete: true`) against the base tables; a migration
holding raw_sql holds nothing else, and the new version's views are built from the catalog as
the SQL left it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .base import DBAction, OpBase, Schema, SqlExpr, StartResult


class RawSql(OpBase):
    kind: ClassVar[str] = "raw_sql"
    unsafe: ClassVar[bool] = True
    sql: SqlExpr
    rollback_sql: SqlExpr | None = Field(default=None, alias="rollback")
    on_complete: bool = False
    irreversible: bool = Field(
        default=False, description="its effect cannot be undone (it drops data): more caution"
    )

    def start(self, schema: Schema) -> StartResult:
        actions = () if self.on_complete else (self._action(self.sql),)
        return StartResult(schema=schema, actions=actions, unsafe=True)

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        return (self._action(self.sql),) if self.on_complete else ()

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        if self.on_complete or self.rollback_sql is None:
            return ()
        return (self._action(self.rollback_sql),)

    @staticmethod
    def _action(sql: str) -> DBAction:
        return DBAction(
            sql,
            locks="unknown (raw SQL: see `zerodown migrate lint`)",
            transactional="concurrently" not in sql.lower(),
            note="unsafe: raw SQL",
        )
