"""The in-memory description of a database schema that the pure operations work on.

A `Schema` is read from the catalog (`catalog.read_schema`) when a migration starts. Between the
start and the completion of a migration, a table or column has a *logical* name (what an app
sees through its version schema of views) and a *physical* one (what the base table holds): a
renamed column keeps its old physical name until `complete`, an altered column lives in a
`_zd_new_<name>` shadow column. Outside a migration the two names are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SHADOW_PREFIX = "_zd_new_"
"""Prefix of the physical shadow column that holds the new version of an altered column."""


def ident(name: str) -> str:
    """Quote an SQL identifier (always, so reserved words and capitals are safe)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def short_name(*parts: str, limit: int = 63) -> str:
    """Join parts with `_` and cut to PostgreSQL's identifier limit (NAMEDATALEN - 1)."""
    return "_".join(p for p in parts if p)[:limit]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    default: str | None = None
    physical: str = ""

    @property
    def phys(self) -> str:
        return self.physical or self.name


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    physical: str = ""
    indexes: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()

    @property
    def phys(self) -> str:
        return self.physical or self.name

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def has_column(self, name: str) -> bool:
        return self.column(name) is not None

    def with_column(self, column: Column) -> Table:
        """The table with `column` replacing the column of the same logical name, or appended."""
        if self.has_column(column.name):
            cols = tuple(column if c.name == column.name else c for c in self.columns)
        else:
            cols = (*self.columns, column)
        return replace(self, columns=cols)

    def without_column(self, name: str) -> Table:
        return replace(
            self,
            columns=tuple(c for c in self.columns if c.name != name),
            primary_key=tuple(k for k in self.primary_key if k != name),
        )

    def renamed_column(self, old: str, new: str) -> Table:
        cols = tuple(
            replace(c, name=new, physical=c.phys) if c.name == old else c for c in self.columns
        )
        pk = tuple(new if k == old else k for k in self.primary_key)
        return replace(self, columns=cols, primary_key=pk)

    def physical_pk(self) -> tuple[Column, ...]:
        return tuple(c for k in self.primary_key if (c := self.column(k)) is not None)


@dataclass(frozen=True)
class Schema:
    """Tables of one base schema (e.g. `public`), plus the names the running migration uses."""

    base: str = "public"
    tables: tuple[Table, ...] = ()
    version_schema: str = ""
    migration: str = ""
    extra_indexes: tuple[str, ...] = field(default=())

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def has_table(self, name: str) -> bool:
        return self.table(name) is not None

    def with_table(self, table: Table) -> Schema:
        if self.has_table(table.name):
            tables = tuple(table if t.name == table.name else t for t in self.tables)
        else:
            tables = (*self.tables, table)
        return replace(self, tables=tables)

    def without_table(self, name: str) -> Schema:
        return replace(self, tables=tuple(t for t in self.tables if t.name != name))

    def index_names(self) -> set[str]:
        names = {i for t in self.tables for i in t.indexes}
        return names | set(self.extra_indexes)

    def qualified(self, table: Table | str) -> str:
        """Schema-qualified physical table name."""
        phys = table.phys if isinstance(table, Table) else table
        return f"{ident(self.base)}.{ident(phys)}"

    def to_json(self) -> dict[str, object]:
        """A JSON-able snapshot, stored with the migration so complete/rollback can replan."""
        return {
            "base": self.base,
            "tables": [
                {
                    "name": t.name,
                    "physical": t.physical,
                    "primary_key": list(t.primary_key),
                    "indexes": list(t.indexes),
                    "constraints": list(t.constraints),
                    "columns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "nullable": c.nullable,
                            "default": c.default,
                            "physical": c.physical,
                        }
                        for c in t.columns
                    ],
                }
                for t in self.tables
            ],
        }

    @staticmethod
    def from_json(data: dict[str, object]) -> Schema:
        tables = []
        for t in data["tables"]:  # type: ignore[attr-defined]
            tables.append(
                Table(
                    name=t["name"],
                    physical=t.get("physical", ""),
                    primary_key=tuple(t["primary_key"]),
                    indexes=tuple(t.get("indexes", ())),
                    constraints=tuple(t.get("constraints", ())),
                    columns=tuple(Column(**c) for c in t["columns"]),
                )
            )
        return Schema(base=str(data["base"]), tables=tuple(tables))
