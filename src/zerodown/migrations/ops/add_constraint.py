"""add_constraint: CHECK and FOREIGN KEY go in NOT VALID and are then validated (a scan that
lets reads and writes go on); UNIQUE is built as an index CONCURRENTLY, then attached.

The constraint holds for the old version's writes too from the moment it is added.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..schema import ident
from .base import (
    DBAction,
    Name,
    OpBase,
    Reference,
    Schema,
    SqlExpr,
    StartResult,
    constraint_exists,
    index_exists,
    rename_refs,
)


class ForeignKey(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    columns: Annotated[list[Name], Field(min_length=1)]
    references: Reference
    references_columns: list[Name] | None = None


class AddConstraint(OpBase):
    kind: ClassVar[str] = "add_constraint"
    table: Name
    name: Name
    check: SqlExpr | None = None
    unique: Annotated[list[Name], Field(min_length=1)] | None = None
    foreign_key: ForeignKey | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AddConstraint:
        given = [k for k in ("check", "unique", "foreign_key") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of check, unique, foreign_key")
        return self

    def validate_against(self, schema: Schema) -> None:
        table = self.need_table(schema, self.table)
        if self.name in table.constraints or self.name in schema.index_names():
            raise self.fail(f"a constraint or index named {self.name!r} already exists")
        for c in self.unique or []:
            self.need_column(table, c)
        if self.foreign_key is not None:
            for c in self.foreign_key.columns:
                self.need_column(table, c)
            target = self.need_table(schema, self.foreign_key.references.table)
            for c in self._ref_columns():
                self.need_column(target, c)

    def _ref_columns(self) -> list[str]:
        assert self.foreign_key is not None
        return self.foreign_key.references_columns or [self.foreign_key.references.column]

    def start(self, schema: Schema) -> StartResult:
        table = self.need_table(schema, self.table)
        qt = schema.qualified(table)
        exists = constraint_exists(schema, table.phys, self.name)
        phys = {c.name: c.phys for c in table.columns}
        acts: list[DBAction] = []
        if self.unique is not None:
            cols = ", ".join(ident(phys[c]) for c in self.unique)
            acts.append(
                DBAction(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {ident(self.name)} ON {qt} ({cols})",
                    locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (reads and writes go on)",
                    transactional=False,
                    index=self.name,
                    skip_if=index_exists(schema, self.name),
                )
            )
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(self.name)} UNIQUE USING INDEX "
                    f"{ident(self.name)}",
                    locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
                    skip_if=exists,
                )
            )
        else:
            if self.check is not None:
                body = f"CHECK ({rename_refs(self.check, phys)})"
                locks = f"ACCESS EXCLUSIVE on {table.phys} (brief: NOT VALID, no scan)"
            else:
                fk = self.foreign_key
                assert fk is not None
                target = self.need_table(schema, fk.references.table)
                tphys = {c.name: c.phys for c in target.columns}
                body = (
                    f"FOREIGN KEY ({', '.join(ident(phys[c]) for c in fk.columns)}) REFERENCES "
                    f"{schema.qualified(target)} "
                    f"({', '.join(ident(tphys[c]) for c in self._ref_columns())})"
                    f" ON DELETE {fk.references.on_delete}"
                )
                locks = f"SHARE ROW EXCLUSIVE on {table.phys} and {target.phys} (brief, no scan)"
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(self.name)} {body} NOT VALID",
                    locks=locks,
                    skip_if=exists,
                )
            )
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} VALIDATE CONSTRAINT {ident(self.name)}",
                    locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (scans; reads and writes go on)",
                )
            )
        new_table = replace(table, constraints=(*table.constraints, self.name))
        return StartResult(schema=schema.with_table(new_table), actions=tuple(acts))

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        table = self.need_table(schema, self.table)
        acts = [
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} DROP CONSTRAINT IF EXISTS {ident(self.name)}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            )
        ]
        if self.unique is not None:
            acts.append(
                DBAction(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {ident(schema.base)}.{ident(self.name)}",
                    locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (reads and writes go on)",
                    transactional=False,
                )
            )
        return tuple(acts)
