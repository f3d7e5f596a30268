"""What every operation shares: the strict model base, name rules, and small SQL helpers."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..actions import Backfill as Backfill_
from ..actions import DBAction, MigrationValidationError, StartResult
from ..schema import Column, Schema, Table, ident, literal, short_name

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
"""A table, column, index or constraint name (quoted in SQL, so capitals are kept)."""

SqlExpr = Annotated[str, Field(min_length=1)]

_CONSTANT_DEFAULT = re.compile(
    r"""^\s*(?:'(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false|null)\s*(?:::\s*[\w\s\[\]()",.]+)?$""",
    re.IGNORECASE,
)


def is_constant(expr: str) -> bool:
    """A literal (with an optional cast): PostgreSQL 11+ adds such a default without a rewrite."""
    return bool(_CONSTANT_DEFAULT.match(expr))


_TOKENS = re.compile(r"'(?:[^']|'')*'|\"((?:[^\"]|\"\")*)\"|([A-Za-z_][A-Za-z0-9_$]*)")


def rename_refs(expr: str, mapping: dict[str, str]) -> str:
    """Point the column names in an SQL expression at their physical columns."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
        if name is not None and name in mapping and mapping[name] != name:
            return ident(mapping[name])
        return m.group(0)

    return _TOKENS.sub(sub, expr) if mapping else expr


class OpBase(BaseModel):
    """An operation: pure methods that turn the schema into SQL actions as data."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
    kind: ClassVar[str] = ""
    unsafe: ClassVar[bool] = False

    def validate_against(self, schema: Schema) -> None:
        """Raise MigrationValidationError when the operation does not fit `schema`."""

    def start(self, schema: Schema) -> StartResult:
        raise NotImplementedError

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        return ()

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        return ()

    # helpers -----------------------------------------------------------------------------
    def fail(self, message: str) -> MigrationValidationError:
        return MigrationValidationError(f"{self.kind}: {message}")

    def need_table(self, schema: Schema, name: str) -> Table:
        table = schema.table(name)
        if table is None:
            known = ", ".join(sorted(t.name for t in schema.tables)) or "none"
            raise self.fail(f"table {name!r} does not exist (tables: {known})")
        return table

    def need_column(self, table: Table, name: str) -> Column:
        column = table.column(name)
        if column is None:
            known = ", ".join(c.name for c in table.columns)
            raise self.fail(f"table {table.name!r} has no column {name!r} (columns: {known})")
        return column

    def need_unchanged(self, table: Table, name: str) -> Column:
        column = self.need_column(table, name)
        if column.phys != column.name:
            raise self.fail(
                f"column {table.name}.{name} is already changed earlier in this migration; a "
                "column can be changed by only one operation per migration: split it into two"
            )
        return column

    def need_pk(self, table: Table) -> None:
        if not table.primary_key:
            raise self.fail(
                f"table {table.name!r} has no primary key, which the batched backfill needs; "
                "add one first (add_constraint is not enough: use raw_sql or a new table)"
            )


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    table: Name
    column: Name
    on_delete: Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] = "NO ACTION"


class ColumnDef(BaseModel):
    """A column as written in create_table and add_column."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: Name
    type: Annotated[str, Field(min_length=1)]
    nullable: bool = True
    default: SqlExpr | None = None
    primary_key: bool = False
    unique: bool = False
    check: SqlExpr | None = None
    references: Reference | None = None


def references_sql(schema: Schema, ref: Reference, where: OpBase) -> str:
    target = where.need_table(schema, ref.table)
    col = where.need_column(target, ref.column)
    return f"REFERENCES {schema.qualified(target)} ({ident(col.phys)}) ON DELETE {ref.on_delete}"


def index_exists(schema: Schema, name: str) -> str:
    return (
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind = 'i' AND n.nspname = {literal(schema.base)}"
        f" AND c.relname = {literal(name)})"
    )


def constraint_exists(schema: Schema, table_phys: str, name: str) -> str:
    return (
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = "
        f"{literal(name)} AND conrelid = to_regclass({literal(schema.qualified(table_phys))}))"
    )


def column_exists(schema: Schema, table_phys: str, column: str) -> str:
    return (
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
        f"to_regclass({literal(schema.qualified(table_phys))}) AND attname = {literal(column)}"
        " AND NOT attisdropped)"
    )


def trigger_name(schema: Schema, table: str, column: str) -> str:
    """Also the name of its function, in the one `zerodown` schema of the database: two base
    schemas running a migration of the same name on tables of the same name must not share it
    (the second would replace the first's function, and its complete drop it). `public` keeps
    the name it always had, so a migration started by an older zerodown still completes."""
    if schema.base == "public":
        return short_name("zd", schema.migration, table, column)
    return short_name("zd", schema.base, schema.migration, table, column)


__all__ = [
    "Backfill_",
    "ColumnDef",
    "DBAction",
    "Name",
    "OpBase",
    "Reference",
    "Schema",
    "SqlExpr",
    "StartResult",
    "Table",
    "column_exists",
    "constraint_exists",
    "index_exists",
    "is_constant",
    "references_sql",
    "rename_refs",
    "short_name",
    "trigger_name",
]
