"""alter_column: change type, nullability, default, check, unique or references of a column.

The changed column lives beside the old one in a shadow column (`_zd_new_<name>`): an `up`
trigger fills it from the old version's writes, a `down` trigger fills the old column from the
new version's writes, and a batched backfill fills the rows that existed before. Constraints on
the shadow go in NOT VALID and are validated after the backfill; unique indexes are built
CONCURRENTLY. At complete the old column is dropped and the shadow takes its name. Changing only
the name is a rename_column.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from ..schema import SHADOW_PREFIX, Column, Table, ident
from ..triggers import Assign, TriggerSpec
from .base import (
    Backfill_,
    DBAction,
    Name,
    OpBase,
    Reference,
    Schema,
    SqlExpr,
    StartResult,
    column_exists,
    constraint_exists,
    index_exists,
    references_sql,
    rename_refs,
    short_name,
    trigger_name,
)
from .rename_column import RenameColumn

_CHANGES = ("type", "nullable", "default", "check", "unique", "references")


class AlterColumn(OpBase):
    kind: ClassVar[str] = "alter_column"
    table: Name
    column: Name
    name: Name | None = None
    type: SqlExpr | None = None
    nullable: bool | None = None
    default: SqlExpr | None = None
    check: SqlExpr | None = None
    unique: bool | None = None
    references: Reference | None = None
    up: SqlExpr | None = None
    down: SqlExpr | None = None

    def _changes(self) -> list[str]:
        return [f for f in _CHANGES if f in self.model_fields_set]

    def _rename_only(self) -> RenameColumn | None:
        if self._changes() or self.name is None:
            return None
        return RenameColumn.model_validate(
            {"table": self.table, "from": self.column, "to": self.name}
        )

    def validate_against(self, schema: Schema) -> None:
        if not self._changes() and self.name is None:
            raise self.fail(
                f"nothing to change on {self.table}.{self.column}: give one of name, "
                + ", ".join(_CHANGES)
            )
        rename = self._rename_only()
        if rename is not None:
            rename.validate_against(schema)
            return
        table = self.need_table(schema, self.table)
        self.need_unchanged(table, self.column)
        if self.column in table.primary_key:
            raise self.fail(f"cannot alter {self.column!r}: it is in the primary key")
        new = self.name or self.column
        if new != self.column and (
            table.has_column(new) or any(c.phys == new for c in table.columns)
        ):
            raise self.fail(f"table {self.table!r} already has a column {new!r}")
        if self.references is not None:
            references_sql(schema, self.references, self)
        self.need_pk(table)

    # names ---------------------------------------------------------------------------------
    def _new_name(self) -> str:
        return self.name or self.column

    def _shadow(self) -> str:
        return (SHADOW_PREFIX + self.column)[:63]

    def _tmp(self, what: str) -> str:
        return short_name("_zd", self.table, self._new_name(), what)

    def _final(self, what: str) -> str:
        return short_name(self.table, self._new_name(), what)

    def _new_column(self, old: Column) -> Column:
        fields = self.model_fields_set
        return Column(
            name=self._new_name(),
            type=self.type if "type" in fields and self.type else old.type,
            nullable=self.nullable
            if "nullable" in fields and self.nullable is not None
            else old.nullable,
            # the old default may not fit a new type: it is kept only when the type stays
            default=self.default
            if "default" in fields
            else (old.default if "type" not in fields or self.type == old.type else None),
            physical=self._shadow(),
        )

    def start(self, schema: Schema) -> StartResult:
        rename = self._rename_only()
        if rename is not None:
            return rename.start(schema)
        table = self.need_table(schema, self.table)
        old = self.need_column(table, self.column)
        new = self._new_column(old)
        shadow = new.phys
        qt = schema.qualified(table)
        brief = f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)"
        scan = f"SHARE UPDATE EXCLUSIVE on {table.phys} (scans; reads and writes go on)"
        acts: list[DBAction] = [
            DBAction(
                f"ALTER TABLE {qt} ADD COLUMN IF NOT EXISTS {ident(shadow)} {new.type}",
                locks=brief,
            )
        ]
        after: list[DBAction] = []
        if new.default is not None:
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} ALTER COLUMN {ident(shadow)} SET DEFAULT {new.default}",
                    locks=brief,
                )
            )

        # Constraints go in after the backfill (NOT VALID, then VALIDATE): before it, the
        # shadow column is still empty in rows the triggers have not touched yet.
        def add_constraint(name: str, body: str, locks: str = brief) -> None:
            after.append(
                DBAction(
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(name)} {body} NOT VALID",
                    locks=locks + " — NOT VALID, no scan",
                    skip_if=constraint_exists(schema, table.phys, name),
                )
            )
            after.append(
                DBAction(
                    f"ALTER TABLE {qt} VALIDATE CONSTRAINT {ident(name)}",
                    locks=scan,
                )
            )

        if not new.nullable:
            add_constraint(self._tmp("notnull"), f"CHECK ({ident(shadow)} IS NOT NULL)")
        if self.check is not None:
            mapping = {self.column: shadow, self._new_name(): shadow}
            add_constraint(self._tmp("check"), f"CHECK ({rename_refs(self.check, mapping)})")
        if self.references is not None:
            ref = references_sql(schema, self.references, self)
            add_constraint(
                self._tmp("fkey"),
                f"FOREIGN KEY ({ident(shadow)}) {ref}",
                f"SHARE ROW EXCLUSIVE on {table.phys} and {self.references.table}",
            )
        if self.unique:
            key = self._tmp("key")
            after.append(
                DBAction(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {ident(key)} ON {qt} "
                    f"({ident(shadow)})",
                    locks=f"SHARE UPDATE EXCLUSIVE on {table.phys} (reads and writes go on)",
                    transactional=False,
                    index=key,
                    skip_if=index_exists(schema, key),
                )
            )
        type_changed = new.type != old.type
        up = self.up or (
            f"CAST({ident(self.column)} AS {new.type})" if type_changed else ident(self.column)
        )
        down = self.down or (
            f"CAST({ident(new.name)} AS {old.type})" if type_changed else ident(new.name)
        )
        new_table = self._swap(table, old, new)
        trigger = TriggerSpec(
            name=trigger_name(schema, table.phys, self.column),
            base=schema.base,
            version_schema=schema.version_schema,
            old_table=table,
            new_table=new_table,
            old_writes=(Assign(shadow, up),),
            new_writes=(Assign(old.phys, down),),
        )
        backfill = Backfill_(table.phys, tuple((c.phys, c.type) for c in table.physical_pk()))
        return StartResult(
            schema=schema.with_table(new_table),
            actions=tuple(acts),
            backfills=(backfill,),
            after_backfill=tuple(after),
            triggers=(trigger,),
        )

    @staticmethod
    def _swap(table: Table, old: Column, new: Column) -> Table:
        cols = tuple(new if c.name == old.name else c for c in table.columns)
        return replace(table, columns=cols)

    def complete(self, schema: Schema) -> tuple[DBAction, ...]:
        rename = self._rename_only()
        if rename is not None:
            return rename.complete(schema)
        table = self.need_table(schema, self.table)
        old = self.need_column(table, self.column)
        new = self._new_column(old)
        qt = schema.qualified(table)
        brief = f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)"
        acts = [
            DBAction(f"ALTER TABLE {qt} DROP COLUMN IF EXISTS {ident(old.phys)}", locks=brief),
            DBAction(
                f"ALTER TABLE {qt} RENAME COLUMN {ident(new.phys)} TO {ident(new.name)}",
                locks=brief,
                skip_if="SELECT NOT "
                + column_exists(schema, table.phys, new.phys)[len("SELECT ") :],
            ),
        ]
        if not new.nullable:
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} ALTER COLUMN {ident(new.name)} SET NOT NULL",
                    locks=f"ACCESS EXCLUSIVE on {table.phys} (brief: the validated check skips the scan)",
                )
            )
            acts.append(
                DBAction(
                    f"ALTER TABLE {qt} DROP CONSTRAINT IF EXISTS {ident(self._tmp('notnull'))}",
                    locks=brief,
                )
            )
        for what in ("check", "fkey"):
            if (what == "check" and self.check) or (what == "fkey" and self.references):
                acts.append(
                    DBAction(
                        f"ALTER TABLE {qt} RENAME CONSTRAINT {ident(self._tmp(what))} TO "
                        f"{ident(self._final(what))}",
                        locks=brief,
                        skip_if=constraint_exists(schema, table.phys, self._final(what)),
                    )
                )
        if self.unique:
            acts.append(
                DBAction(
                    f"ALTER INDEX IF EXISTS {ident(schema.base)}.{ident(self._tmp('key'))} "
                    f"RENAME TO {ident(self._final('key'))}",
                    locks=f"SHARE UPDATE EXCLUSIVE on {self._tmp('key')} (brief)",
                    skip_if=index_exists(schema, self._final("key")),
                )
            )
        return tuple(acts)

    def rollback(self, schema: Schema) -> tuple[DBAction, ...]:
        if self._rename_only() is not None:
            return ()
        table = self.need_table(schema, self.table)
        return (
            DBAction(
                f"ALTER TABLE {schema.qualified(table)} DROP COLUMN IF EXISTS "
                f"{ident(self._shadow())}",
                locks=f"ACCESS EXCLUSIVE on {table.phys} (brief, catalog only)",
            ),
        )
