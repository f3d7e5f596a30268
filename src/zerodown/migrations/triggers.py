"""Up/down triggers that keep the old and the new shape of a table in sync during expand.

A write through the new version's schema of views is recognised by that schema being on the
session's effective search_path (`current_schemas(false)`). Every other write — the old version,
or zerodown's own backfill — counts as the old side. The user's `up`/`down` SQL is written with
plain column names; the trigger function declares one local variable per column, named after the
column and holding the row's value, so the expression evaluates as written (the approach pgroll
and Reshape also take).

The backfill does not pay for a plpgsql call per row when it can avoid it: where the up
expressions can be written over the table's own columns (`direct_fills`), its UPDATE sets the
new columns itself and the session sets `zerodown.backfill = direct`, which the triggers' WHEN
clause skips (a C-level check per row, no function call). A workload write that races a batch
still ends right: it is not the backfill's session, so its trigger fires; if it committed first
the batch's `IS NULL` filter (rechecked on the newest row version after a lock wait) skips the
row, and if the batch was first the write overwrites the batch's value with its own. Otherwise
(an expression PostgreSQL will not accept as a SET, names that differ from the physical ones)
the session sets `zerodown.backfill = on`, the batch touches each row, and the trigger only
fills new values that are still NULL, so a row the new version already wrote is not
overwritten by up(down(value)). The direct fill keeps the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .actions import DBAction
from .schema import Table, ident, literal

STATE_SCHEMA = "zerodown"
# The backfill's session setting under which the triggers do not fire: it sets the columns itself.
DIRECT = "direct"


@dataclass(frozen=True)
class Assign:
    target: str  # physical column to set
    expr: str  # SQL in terms of the side's logical column names
    only_if_null: bool = False  # fill a default into rows that lack a value, never overwrite


@dataclass(frozen=True)
class TriggerSpec:
    name: str
    base: str
    version_schema: str
    old_table: Table  # the table as the old version sees it (logical names → physical)
    new_table: Table  # the table as the new version sees it
    old_writes: tuple[Assign, ...] = ()  # applied on writes from the old side (up)
    new_writes: tuple[Assign, ...] = ()  # applied on writes from the new side (down)


def _declare(table: Table) -> str:
    return "".join(
        f"      {ident(c.name)} {c.type} := NEW.{ident(c.phys)};\n" for c in table.columns
    )


def _assigns(assigns: tuple[Assign, ...], *, backfill_guard: bool) -> str:
    out = []
    for a in assigns:
        line = f"NEW.{ident(a.target)} := ({a.expr});"
        if a.only_if_null:
            line = f"IF NEW.{ident(a.target)} IS NULL THEN {line} END IF;"
        elif backfill_guard:
            line = (
                "IF coalesce(current_setting('zerodown.backfill', true), '') <> 'on'"
                f" OR NEW.{ident(a.target)} IS NULL THEN {line} END IF;"
            )
        out.append(f"      {line}\n")
    return "".join(out)


def _block(table: Table, assigns: tuple[Assign, ...], *, backfill_guard: bool) -> str:
    if not assigns:
        return "    NULL;\n"
    return (
        f"    DECLARE\n{_declare(table)}    BEGIN\n"
        f"{_assigns(assigns, backfill_guard=backfill_guard)}    END;\n"
    )


def direct_fills(specs: Iterable[TriggerSpec]) -> tuple[tuple[str, str], ...]:
    """What the old side's triggers of one table write into a row the backfill touches, as
    (physical column, SQL over the table's physical columns) pairs the backfill's UPDATE can
    set itself; () when they cannot be: an expression is written over the old version's
    logical names, so each logical name must be its physical one, and no target may be a
    column another expression reads (the triggers would see each other's writes in turn)."""
    fills: list[tuple[str, str]] = []
    for spec in specs:
        columns = spec.old_table.columns
        if any(c.name != c.phys for c in columns):
            return ()
        read = {c.phys for c in columns}
        for a in spec.old_writes:
            if a.target in read or any(a.target == t for t, _ in fills):
                return ()
            fills.append((a.target, a.expr))
    return tuple(fills)


def function_name(spec: TriggerSpec) -> str:
    return f"{ident(STATE_SCHEMA)}.{ident(spec.name)}"


def create_actions(spec: TriggerSpec) -> tuple[DBAction, ...]:
    table = f"{ident(spec.base)}.{ident(spec.old_table.phys)}"
    body = (
        f"CREATE OR REPLACE FUNCTION {function_name(spec)}() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $zd$\nBEGIN\n"
        f"  IF {literal(spec.version_schema)} = ANY(current_schemas(false)) THEN\n"
        f"{_block(spec.new_table, spec.new_writes, backfill_guard=False)}"
        "  ELSE\n"
        f"{_block(spec.old_table, spec.old_writes, backfill_guard=True)}"
        "  END IF;\n  RETURN NEW;\nEND\n$zd$"
    )
    trigger = (
        f"CREATE OR REPLACE TRIGGER {ident(spec.name)} BEFORE INSERT OR UPDATE ON {table}"
        " FOR EACH ROW WHEN (current_setting('zerodown.backfill', true) IS DISTINCT FROM"
        f" {literal(DIRECT)}) EXECUTE FUNCTION {function_name(spec)}()"
    )
    return (
        DBAction(body, locks="none (creates a function)"),
        DBAction(
            trigger,
            locks=f"SHARE ROW EXCLUSIVE on {spec.old_table.phys} (brief: waits for writers)",
        ),
    )


def drop_actions(spec: TriggerSpec) -> tuple[DBAction, ...]:
    table = f"{ident(spec.base)}.{ident(spec.old_table.phys)}"
    return (
        DBAction(
            f"DROP TRIGGER IF EXISTS {ident(spec.name)} ON {table}",
            locks=f"ACCESS EXCLUSIVE on {spec.old_table.phys} (brief, catalog only)",
        ),
        DBAction(f"DROP FUNCTION IF EXISTS {function_name(spec)}()", locks="none"),
    )
