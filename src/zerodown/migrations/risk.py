"""Which migrations cannot be undone once contracted: the risk that raises a rollout's caution.

Pure: it reads migration models, never a database. A contract is irreversible when it destroys
data the old version could still need:

- drop_column, drop_table: the data goes with them;
- alter_column with a type change that narrows (bigint → integer, text → varchar(20),
  numeric(12,2) → numeric(12,0), timestamptz → date, ...): values are cut at complete. A change
  whose old type the migration files do not show is counted as narrowing (the safe side);
- raw_sql with `irreversible: true`, or with `on_complete: true` (it runs at the contract, and
  a contract has no undo).

The old type of a column is followed through the files in order (create_table, add_column,
alter_column, rename_column, rename_table, drop_*), so `migrations/` alone is enough.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .model import Migration, load_migration
from .ops import (
    AddColumn,
    AlterColumn,
    CreateTable,
    DropColumn,
    DropTable,
    OpBase,
    RawSql,
    RenameColumn,
    RenameTable,
)

# Types by family, narrowest first: moving left within a family narrows. Across families
# (text → integer) is always narrowing: not every value converts back.
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("smallint", "integer", "bigint", "numeric"),
    ("real", "double precision", "numeric"),
    ("date", "timestamp", "timestamptz"),
    ("varchar", "text"),
)
_ALIASES = {
    "int": "integer",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "serial": "integer",
    "bigserial": "bigint",
    "smallserial": "smallint",
    "decimal": "numeric",
    "float4": "real",
    "float8": "double precision",
    "float": "double precision",
    "character varying": "varchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "bool": "boolean",
}


def _parse(sql_type: str) -> tuple[str, tuple[int, ...]]:
    """("varchar", (20,)) from "VARCHAR(20)"; ("numeric", ()) from "decimal"."""
    text = " ".join(sql_type.lower().split())
    match = re.fullmatch(r"([a-z][a-z0-9 ]*?)\s*(?:\(([\d,\s]+)\))?", text)
    if match is None:
        return text, ()
    base = _ALIASES.get(match.group(1).strip(), match.group(1).strip())
    args = tuple(int(a) for a in match.group(2).split(",")) if match.group(2) else ()
    return base, args


def narrows(old: str, new: str) -> bool:
    """Whether changing a column from `old` to `new` can lose values (True when unsure)."""
    (ob, oa), (nb, na) = _parse(old), _parse(new)
    if ob == nb:
        if not na:  # varchar(20) → varchar, numeric(12,2) → numeric: unbounded is wider
            return False
        if not oa:
            return True
        return any(n < o for n, o in zip(na, oa, strict=False))
    for family in _FAMILIES:
        if ob in family and nb in family:
            if ob == "varchar" and nb == "text":
                return False
            return family.index(nb) < family.index(ob) or (nb == "numeric" and bool(na))
    return True


@dataclass(frozen=True)
class Risk:
    """Why one migration's contract cannot be undone (empty: it can)."""

    migration: str
    reasons: tuple[str, ...]

    @property
    def irreversible(self) -> bool:
        return bool(self.reasons)


class _Columns:
    """Column types as the files so far leave them: {table: {column: type}}."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, str]] = {}

    def type_of(self, table: str, column: str) -> str | None:
        return self.tables.get(table, {}).get(column)

    def apply(self, op: OpBase) -> None:
        if isinstance(op, CreateTable):
            self.tables[op.table] = {c.name: c.type for c in op.columns}
        elif isinstance(op, AddColumn):
            self.tables.setdefault(op.table, {})[op.column.name] = op.column.type
        elif isinstance(op, AlterColumn):
            columns = self.tables.setdefault(op.table, {})
            kind = op.type or columns.get(op.column)
            columns.pop(op.column, None)
            if kind is not None:
                columns[op.name or op.column] = kind
        elif isinstance(op, RenameColumn):
            columns = self.tables.setdefault(op.table, {})
            if op.from_ in columns:
                columns[op.to] = columns.pop(op.from_)
        elif isinstance(op, RenameTable):
            self.tables[op.to] = self.tables.pop(op.from_, {})
        elif isinstance(op, DropColumn):
            self.tables.get(op.table, {}).pop(op.column, None)
        elif isinstance(op, DropTable):
            self.tables.pop(op.table, None)


def _reason(op: OpBase, columns: _Columns) -> str | None:
    if isinstance(op, DropColumn):
        return f"drop_column {op.table}.{op.column} drops its data at complete"
    if isinstance(op, DropTable):
        return f"drop_table {op.table} drops its rows at complete"
    if isinstance(op, AlterColumn) and op.type is not None:
        old = columns.type_of(op.table, op.column)
        if old is None:
            return (
                f"alter_column {op.table}.{op.column} to {op.type}: its old type is not in the "
                "migration files, so it may narrow (counted as irreversible)"
            )
        if narrows(old, op.type):
            return f"alter_column {op.table}.{op.column} narrows {old} to {op.type} at complete"
    if isinstance(op, RawSql):
        if op.irreversible:
            return "raw_sql marked irreversible"
        if op.on_complete:
            return "raw_sql runs at complete (on_complete), and a contract has no undo"
    return None


def assess(migrations: Sequence[Migration], names: Sequence[str]) -> list[Risk]:
    """The risk of each migration, in order; `names` are their names (files without suffix)."""
    columns = _Columns()
    risks: list[Risk] = []
    for migration, name in zip(migrations, names, strict=True):
        reasons = [r for op in migration.ops if (r := _reason(op, columns)) is not None]
        for op in migration.ops:
            columns.apply(op)
        risks.append(Risk(migration=migration.name or name, reasons=tuple(reasons)))
    return risks


def risk_of(risks: Iterable[Risk], name: str | None) -> Risk | None:
    return next((r for r in risks if r.migration == name), None)


def assess_dir(directory: str | Path) -> list[Risk]:
    """The risk of every migration file in `directory`, in the order zerodown applies them."""
    from .api import migration_files  # the one place that orders the files

    files = migration_files(directory)
    return assess([load_migration(f) for f in files], [f.stem for f in files])


def reasons_for(directory: str | Path, name: str) -> list[str]:
    """Why migration `name` (a name or a file name) cannot be undone; [] when it can."""
    found = risk_of(assess_dir(directory), Path(name).stem if "." in name else name)
    return list(found.reasons) if found else []
