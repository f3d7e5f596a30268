"""Which contracts cannot be undone (zerodown.migrations.risk): table-driven, no database."""

from __future__ import annotations

from typing import Any

import pytest

from zerodown.migrations.model import Migration
from zerodown.migrations.risk import assess, narrows


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("integer", "bigint", False),
        ("bigint", "integer", True),
        ("int4", "int8", False),
        ("varchar(20)", "text", False),
        ("text", "varchar(20)", True),
        ("varchar(20)", "varchar(10)", True),
        ("varchar(10)", "VARCHAR(20)", False),
        ("numeric(12,2)", "numeric(12,0)", True),
        ("numeric(12,2)", "numeric", False),
        ("timestamptz", "date", True),
        ("date", "timestamptz", False),
        ("text", "integer", True),  # across families: not every value converts back
        ("jsonb", "jsonb", False),
    ],
)
def test_narrows(old: str, new: str, expected: bool) -> None:
    assert narrows(old, new) is expected


CREATE = {
    "create_table": {
        "table": "users",
        "columns": [
            {"name": "id", "type": "bigserial", "primary_key": True},
            {"name": "email", "type": "text"},
            {"name": "age", "type": "integer"},
        ],
    }
}


def migration(*ops: dict[str, Any]) -> Migration:
    return Migration.model_validate({"operations": list(ops)})


@pytest.mark.parametrize(
    ("ops", "reasons"),
    [
        ([{"add_column": {"table": "users", "column": {"name": "x", "type": "text"}}}], []),
        ([{"drop_column": {"table": "users", "column": "email"}}], ["drop_column users.email"]),
        ([{"drop_table": {"table": "users"}}], ["drop_table users"]),
        ([{"alter_column": {"table": "users", "column": "age", "type": "bigint"}}], []),
        (
            [{"alter_column": {"table": "users", "column": "age", "type": "smallint"}}],
            ["alter_column users.age narrows integer to smallint"],
        ),
        (
            [{"alter_column": {"table": "users", "column": "ghost", "type": "int"}}],
            ["alter_column users.ghost to int: its old type is not in the migration files"],
        ),
        ([{"rename_column": {"table": "users", "from": "email", "to": "mail"}}], []),
        ([{"raw_sql": {"sql": "DELETE FROM users", "irreversible": True}}], ["raw_sql marked"]),
        ([{"raw_sql": {"sql": "VACUUM users", "on_complete": True}}], ["raw_sql runs at complete"]),
        ([{"raw_sql": {"sql": "CREATE INDEX i ON users (email)"}}], []),
    ],
)
def test_assess(ops: list[dict[str, Any]], reasons: list[str]) -> None:
    first, second = assess([migration(CREATE), migration(*ops)], ["0001_create", "0002_next"])
    assert first.reasons == ()
    assert second.migration == "0002_next"
    assert len(second.reasons) == len(reasons)
    for got, want in zip(second.reasons, reasons, strict=True):
        assert got.startswith(want)


def test_types_follow_renames() -> None:
    renamed = migration({"rename_column": {"table": "users", "from": "age", "to": "years"}})
    narrowed = migration(
        {"alter_column": {"table": "users", "column": "years", "type": "smallint"}}
    )
    risks = assess([migration(CREATE), renamed, narrowed], ["a", "b", "c"])
    assert risks[2].reasons == ("alter_column users.years narrows integer to smallint at complete",)
