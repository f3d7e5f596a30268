"""Pure planning: a migration + the schema it starts from → every SQL action of every phase."""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import triggers as trg
from .actions import Backfill, DBAction, MigrationValidationError
from .model import Migration
from .ops import OpBase
from .schema import Schema, ident, short_name


def version_schema_name(base: str, migration: str) -> str:
    return short_name(base, migration)


@dataclass(frozen=True)
class MigrationPlan:
    name: str
    version_schema: str
    before: Schema
    after: Schema
    start: tuple[DBAction, ...]
    backfills: tuple[Backfill, ...]
    after_backfill: tuple[DBAction, ...]
    views: DBAction
    complete: tuple[DBAction, ...]
    rollback: tuple[DBAction, ...]
    unsafe: bool


def view_sql(schema: Schema, version_schema: str) -> str:
    """(Re)create the version schema: one auto-updatable view per table, logical names."""
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {ident(version_schema)}"]
    for t in schema.tables:
        cols = ",\n  ".join(
            ident(c.phys) if c.phys == c.name else f"{ident(c.phys)} AS {ident(c.name)}"
            for c in t.columns
        )
        view = f"{ident(version_schema)}.{ident(t.name)}"
        stmts.append(f"DROP VIEW IF EXISTS {view}")
        stmts.append(f"CREATE VIEW {view} AS SELECT\n  {cols}\nFROM {schema.qualified(t)}")
    return ";\n".join(stmts)


def views_action(schema: Schema, version_schema: str) -> DBAction:
    return DBAction(
        view_sql(schema, version_schema),
        locks="none on tables (creates views in the new version schema)",
    )


def _sides(spec: trg.TriggerSpec, before: Schema, after: Schema) -> trg.TriggerSpec:
    phys = spec.old_table.phys
    old = next((t for t in before.tables if t.phys == phys), spec.old_table)
    new = next((t for t in after.tables if t.phys == phys), spec.new_table)
    return replace(spec, old_table=old, new_table=new)


def plan_migration(migration: Migration, schema: Schema) -> MigrationPlan:
    """Validate every operation against the schema left by the ones before it, and plan.

    Complete and rollback run in reverse operation order, after all triggers are dropped, so a
    later operation still finds the physical names an earlier one changes (a column altered in
    a table that is also renamed).
    """
    name = migration.name or "migration"
    vschema = version_schema_name(schema.base, name)
    current = replace(schema, version_schema=vschema, migration=name)
    start: list[DBAction] = []
    after: list[DBAction] = []
    backfills: dict[str, Backfill] = {}
    triggers: list[trg.TriggerSpec] = []
    steps: list[tuple[OpBase, Schema]] = []
    unsafe = False
    for number, op in enumerate(migration.ops, 1):
        try:
            op.validate_against(current)
        except MigrationValidationError as e:
            raise MigrationValidationError(f"operation {number} ({e})") from None
        result = op.start(current)
        for spec in result.triggers:
            if any(t.name == spec.name for t in triggers):
                raise MigrationValidationError(
                    f"operation {number} ({op.kind}): a column can be changed by only one "
                    "operation per migration; split it into two migrations"
                )
        steps.append((op, current))
        start.extend(result.actions)
        triggers.extend(result.triggers)
        for b in result.backfills:
            backfills.setdefault(b.table, b)
        after.extend(result.after_backfill)
        unsafe = unsafe or result.unsafe or op.unsafe
        current = result.schema
    # The old side's expressions use the names the old version knows (the schema before the
    # migration); the new side's use the final names. Triggers go in after every column exists.
    triggers = [_sides(spec, schema, current) for spec in triggers]
    for table, b in backfills.items():
        fills = trg.direct_fills(s for s in triggers if s.old_table.phys == table)
        backfills[table] = replace(b, fills=fills)
    for spec in triggers:
        start.extend(trg.create_actions(spec))
    drops = [a for spec in triggers for a in trg.drop_actions(spec)]
    complete = list(drops)
    rollback = list(drops)
    for op, before in reversed(steps):
        complete.extend(op.complete(before))
        rollback.extend(op.rollback(before))
    final = replace(current, version_schema="", migration="")
    return MigrationPlan(
        name=name,
        version_schema=vschema,
        before=schema,
        after=final,
        start=tuple(start),
        backfills=tuple(backfills.values()),
        after_backfill=tuple(after),
        views=views_action(final, vschema),
        complete=tuple(complete),
        rollback=tuple(rollback),
        unsafe=unsafe,
    )
