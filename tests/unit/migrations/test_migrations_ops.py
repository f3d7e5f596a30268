"""The pure operations and the planner: SQL as data, no database."""

from __future__ import annotations

from typing import Any

import pytest

from zerodown.migrations.actions import MigrationValidationError
from zerodown.migrations.executor import fill_sql
from zerodown.migrations.model import Migration
from zerodown.migrations.ops.base import is_constant, rename_refs
from zerodown.migrations.planner import plan_migration
from zerodown.migrations.schema import Column, Schema, Table

USERS = Table(
    "users",
    (
        Column("id", "bigint", False),
        Column("email", "text"),
        Column("age", "integer"),
        Column("name", "text", False),
    ),
    primary_key=("id",),
    indexes=("users_pkey", "users_email_idx"),
    constraints=("users_pkey", "users_age_positive"),
)
NOPK = Table("logs", (Column("line", "text"),))
SCHEMA = Schema(tables=(USERS, NOPK))


def mig(*ops: dict[str, Any]) -> Migration:
    return Migration.model_validate({"name": "m2", "operations": list(ops)})


def sqls(actions: Any) -> str:
    return "\n".join(a.sql for a in actions)


# (operation, fragments of start, of complete, of rollback, needs backfill)
CASES: list[tuple[dict[str, Any], list[str], list[str], list[str], bool]] = [
    (
        {
            "create_table": {
                "table": "posts",
                "columns": [
                    {"name": "id", "type": "bigserial", "primary_key": True},
                    {
                        "name": "user_id",
                        "type": "bigint",
                        "references": {"table": "users", "column": "id"},
                    },
                ],
            }
        },
        [
            'CREATE TABLE IF NOT EXISTS "public"."posts"',
            'PRIMARY KEY ("id")',
            'REFERENCES "public"."users" ("id")',
        ],
        [],
        ['DROP TABLE IF EXISTS "public"."posts"'],
        False,
    ),
    ({"drop_table": {"table": "logs"}}, [], ['DROP TABLE IF EXISTS "public"."logs"'], [], False),
    (
        {"rename_table": {"from": "users", "to": "people"}},
        [],
        ['ALTER TABLE IF EXISTS "public"."users" RENAME TO "people"'],
        [],
        False,
    ),
    (
        {
            "add_column": {
                "table": "users",
                "column": {"name": "plan", "type": "text", "default": "'free'", "nullable": False},
            }
        },
        ["ADD COLUMN IF NOT EXISTS \"plan\" text DEFAULT 'free' NOT NULL"],
        [],
        ['DROP COLUMN IF EXISTS "plan"'],
        False,
    ),
    (
        {
            "add_column": {
                "table": "users",
                "column": {
                    "name": "seen",
                    "type": "timestamptz",
                    "default": "now()",
                    "nullable": False,
                },
            }
        },
        [
            'ADD COLUMN IF NOT EXISTS "seen" timestamptz',
            "SET DEFAULT now()",
            'CHECK ("seen" IS NOT NULL) NOT VALID',
            "CREATE OR REPLACE TRIGGER",
            'IF NEW."seen" IS NULL THEN NEW."seen" := (now())',
        ],
        ['ALTER COLUMN "seen" SET NOT NULL', "DROP TRIGGER IF EXISTS"],
        ['DROP COLUMN IF EXISTS "seen"'],
        True,
    ),
    (
        {
            "add_column": {
                "table": "users",
                "up": "lower(email)",
                "column": {"name": "email_lc", "type": "text", "unique": True},
            }
        },
        [
            'ADD COLUMN IF NOT EXISTS "email_lc" text',
            'NEW."email_lc" := (lower(email))',
            '"email" text := NEW."email"',
        ],
        [],
        ['DROP COLUMN IF EXISTS "email_lc"'],
        True,
    ),
    (
        {"drop_column": {"table": "users", "column": "name", "down": "'unknown'"}},
        ["NEW.\"name\" := ('unknown')", "current_schemas(false)"],
        ['DROP COLUMN IF EXISTS "name"'],
        [],
        False,
    ),
    (
        {"rename_column": {"table": "users", "from": "email", "to": "email_address"}},
        [],
        ['RENAME COLUMN "email" TO "email_address"'],
        [],
        False,
    ),
    (
        {
            "alter_column": {
                "table": "users",
                "column": "age",
                "type": "bigint",
                "nullable": False,
                "up": "coalesce(age, 0)",
                "check": "age >= 0",
            }
        },
        [
            'ADD COLUMN IF NOT EXISTS "_zd_new_age" bigint',
            'CHECK ("_zd_new_age" >= 0) NOT VALID',
            'NEW."_zd_new_age" := (coalesce(age, 0))',
            'NEW."age" := (CAST("age" AS integer))',
            '"age" bigint := NEW."_zd_new_age"',
        ],
        [
            'DROP COLUMN IF EXISTS "age"',
            'RENAME COLUMN "_zd_new_age" TO "age"',
            'ALTER COLUMN "age" SET NOT NULL',
            'RENAME CONSTRAINT "_zd_users_age_check"',
        ],
        ['DROP COLUMN IF EXISTS "_zd_new_age"'],
        True,
    ),
    (
        {"alter_column": {"table": "users", "column": "email", "name": "mail"}},
        [],
        ['RENAME COLUMN "email" TO "mail"'],
        [],
        False,
    ),
    (
        {"create_index": {"name": "users_age_idx", "table": "users", "columns": ["age"]}},
        [
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "users_age_idx" ON "public"."users" USING btree ("age")'
        ],
        [],
        ['DROP INDEX CONCURRENTLY IF EXISTS "public"."users_age_idx"'],
        False,
    ),
    (
        {"drop_index": {"name": "users_email_idx"}},
        [],
        ['DROP INDEX CONCURRENTLY IF EXISTS "public"."users_email_idx"'],
        [],
        False,
    ),
    (
        {"add_constraint": {"table": "users", "name": "users_age_max", "check": "age < 200"}},
        [
            'ADD CONSTRAINT "users_age_max" CHECK (age < 200) NOT VALID',
            'VALIDATE CONSTRAINT "users_age_max"',
        ],
        [],
        ['DROP CONSTRAINT IF EXISTS "users_age_max"'],
        False,
    ),
    (
        {"add_constraint": {"table": "users", "name": "users_email_key", "unique": ["email"]}},
        [
            'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_email_key"',
            'UNIQUE USING INDEX "users_email_key"',
        ],
        [],
        ['DROP CONSTRAINT IF EXISTS "users_email_key"'],
        False,
    ),
    (
        {"drop_constraint": {"table": "users", "name": "users_age_positive"}},
        [],
        ['DROP CONSTRAINT IF EXISTS "users_age_positive"'],
        [],
        False,
    ),
    (
        {"raw_sql": {"sql": "CREATE EXTENSION IF NOT EXISTS citext", "rollback": "SELECT 1"}},
        ["CREATE EXTENSION IF NOT EXISTS citext"],
        [],
        ["SELECT 1"],
        False,
    ),
]


@pytest.mark.parametrize(
    ("op", "start", "complete", "rollback", "backfill"),
    CASES,
    ids=[next(iter(c[0])) for c in CASES],
)
def test_operation_sql(
    op: dict[str, Any], start: list[str], complete: list[str], rollback: list[str], backfill: bool
) -> None:
    plan = plan_migration(mig(op), SCHEMA)
    start_sql = sqls(plan.start + plan.after_backfill)
    for fragment in start:
        assert fragment in start_sql
    for fragment in complete:
        assert fragment in sqls(plan.complete)
    for fragment in rollback:
        assert fragment in sqls(plan.rollback)
    assert bool(plan.backfills) is backfill
    for action in plan.start + plan.complete + plan.rollback:
        assert action.locks, action.sql
        if "CONCURRENTLY" in action.sql:
            assert not action.transactional


@pytest.mark.parametrize(
    ("op", "words"),
    [
        ({"drop_table": {"table": "nope"}}, "table 'nope' does not exist"),
        (
            {"create_table": {"table": "users", "columns": [{"name": "a", "type": "int"}]}},
            "already exists",
        ),
        ({"rename_column": {"table": "users", "from": "x", "to": "y"}}, "has no column 'x'"),
        ({"rename_column": {"table": "users", "from": "email", "to": "age"}}, "already has"),
        (
            {
                "add_column": {
                    "table": "users",
                    "column": {"name": "p", "type": "int", "nullable": False},
                }
            },
            "neither `default`",
        ),
        (
            {"add_column": {"table": "logs", "up": "1", "column": {"name": "p", "type": "int"}}},
            "no primary key",
        ),
        ({"drop_column": {"table": "users", "column": "name"}}, "give `down`"),
        ({"drop_column": {"table": "users", "column": "id"}}, "primary key"),
        ({"alter_column": {"table": "users", "column": "age"}}, "nothing to change"),
        ({"drop_index": {"name": "nope"}}, "no index named"),
        (
            {"create_index": {"name": "users_pkey", "table": "users", "columns": ["age"]}},
            "already exists",
        ),
        ({"drop_constraint": {"table": "users", "name": "nope"}}, "no constraint"),
    ],
)
def test_validation_errors(op: dict[str, Any], words: str) -> None:
    with pytest.raises(MigrationValidationError, match="operation 1") as info:
        plan_migration(mig(op), SCHEMA)
    assert words in str(info.value)


def test_add_constraint_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        mig({"add_constraint": {"table": "users", "name": "c"}})


def test_one_column_changed_once_per_migration() -> None:
    with pytest.raises(MigrationValidationError, match="only one operation"):
        plan_migration(
            mig(
                {"alter_column": {"table": "users", "column": "age", "type": "bigint"}},
                {"drop_column": {"table": "users", "column": "age", "down": "1"}},
            ),
            SCHEMA,
        )


def test_operations_see_the_schema_left_by_earlier_ones() -> None:
    plan = plan_migration(
        mig(
            {"rename_table": {"from": "users", "to": "people"}},
            {"rename_column": {"table": "people", "from": "email", "to": "mail"}},
            {"alter_column": {"table": "people", "column": "age", "type": "bigint"}},
        ),
        SCHEMA,
    )
    people = plan.after.table("people")
    assert people is not None and plan.after.table("users") is None
    assert [(c.name, c.phys) for c in people.columns] == [
        ("id", "id"),
        ("mail", "email"),
        ("age", "_zd_new_age"),
        ("name", "name"),
    ]
    assert 'CREATE VIEW "public_m2"."people" AS SELECT' in plan.views.sql
    assert '"email" AS "mail"' in plan.views.sql
    # triggers go in after every column exists; complete drops them first, then runs the
    # operations in reverse so the table is renamed last
    kinds = [a.sql.split()[0:3] for a in plan.start]
    assert kinds[-1][:2] == ["CREATE", "OR"]
    assert plan.complete[0].sql.startswith("DROP TRIGGER")
    assert 'RENAME TO "people"' in plan.complete[-1].sql
    # the old side of the trigger knows the old names, the new side the new ones
    func = next(a.sql for a in plan.start if "FUNCTION" in a.sql)
    assert '"email" text := NEW."email"' in func and '"mail" text := NEW."email"' in func


@pytest.mark.parametrize(
    ("expr", "constant"),
    [
        ("'free'", True),
        ("0", True),
        ("-1.5", True),
        ("true", True),
        ("'a'::text", True),
        ("now()", False),
        ("gen_random_uuid()", False),
        ("1 + 1", False),
    ],
)
def test_is_constant(expr: str, constant: bool) -> None:
    assert is_constant(expr) is constant


def test_rename_refs_leaves_strings_alone() -> None:
    assert rename_refs("age > 0 AND note <> 'age'", {"age": "_zd_new_age"}) == (
        "\"_zd_new_age\" > 0 AND note <> 'age'"
    )
    assert rename_refs('"age" > 0', {"age": "x"}) == '"x" > 0'


def test_schema_snapshot_round_trips() -> None:
    assert Schema.from_json(SCHEMA.to_json()) == SCHEMA


def test_the_backfill_sets_the_new_columns_itself_when_it_can() -> None:
    """Two operations on one table: one backfill, which sets both new columns itself (each only
    where still NULL), and triggers that skip the backfill's session."""
    plan = plan_migration(
        mig(
            {
                "alter_column": {
                    "table": "users",
                    "column": "age",
                    "type": "bigint",
                    "up": "age * 2",
                }
            },
            {
                "add_column": {
                    "table": "users",
                    "column": {"name": "tag", "type": "text"},
                    "up": "lower(email)",
                }
            },
        ),
        SCHEMA,
    )
    (backfill,) = plan.backfills
    assert backfill.fills == (("_zd_new_age", "age * 2"), ("tag", "lower(email)"))
    sets, where = fill_sql(backfill.fills)
    assert sets == (
        '"_zd_new_age" = CASE WHEN "_zd_new_age" IS NULL THEN (age * 2) ELSE "_zd_new_age" END, '
        '"tag" = CASE WHEN "tag" IS NULL THEN (lower(email)) ELSE "tag" END'
    )
    assert where == ' AND ("_zd_new_age" IS NULL OR "tag" IS NULL)'
    assert fill_sql(backfill.fills[:1]) == (
        '"_zd_new_age" = (age * 2)',
        ' AND ("_zd_new_age" IS NULL)',
    )
    triggers = [a.sql for a in plan.start if a.sql.startswith("CREATE OR REPLACE TRIGGER")]
    assert len(triggers) == 2
    assert all(
        "WHEN (current_setting('zerodown.backfill', true) IS DISTINCT FROM 'direct')" in t
        for t in triggers
    )


def test_the_triggers_fill_the_rows_when_the_names_are_not_physical() -> None:
    """An expression is written over the old version's names: where one is not the physical
    column's (a rename not yet completed), the backfill leaves the filling to the triggers."""
    renamed = Table(
        "users",
        (Column("id", "bigint", False), Column("mail", "text", physical="email")),
        primary_key=("id",),
    )
    plan = plan_migration(
        mig(
            {
                "add_column": {
                    "table": "users",
                    "column": {"name": "tag", "type": "text"},
                    "up": "lower(mail)",
                }
            }
        ),
        Schema(tables=(renamed,)),
    )
    (backfill,) = plan.backfills
    assert backfill.fills == ()
