"""Every operation against real PostgreSQL: an old-version client and a new-version client
write and read through their own schemas during expand; then complete (first run) or
rollback (second run), and every row each side wrote is still there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from zerodown.migrations import api
from zerodown.migrations.executor import Options


@dataclass(frozen=True)
class Case:
    id: str
    setup: str
    ops: list[dict[str, Any]]
    old_write: str
    new_write: str
    old_read: str
    new_read: str
    old_sees: list[tuple[Any, ...]]
    new_sees: list[tuple[Any, ...]]
    new_hidden: list[str] = field(default_factory=list)  # relations the new version must not see


USERS = (
    "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, name text, "
    "price text NOT NULL DEFAULT '0');"
    "INSERT INTO users (email, name, price) VALUES ('seed@x', 'Seed', '1.50');"
)

CASES = [
    Case(
        "create_table",
        USERS,
        [
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
                        {"name": "title", "type": "text", "nullable": False},
                    ],
                }
            }
        ],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO posts (user_id, title) SELECT id, 'hello' FROM users WHERE email = 'old@x'",
        "SELECT email FROM users ORDER BY id",
        "SELECT u.email, p.title FROM users u LEFT JOIN posts p ON p.user_id = u.id ORDER BY u.id",
        [("seed@x",), ("old@x",)],
        [("seed@x", None), ("old@x", "hello")],
    ),
    Case(
        "drop_table",
        USERS + "CREATE TABLE logs (id bigserial PRIMARY KEY, line text);",
        [{"drop_table": {"table": "logs"}}],
        "INSERT INTO logs (line) VALUES ('old')",
        "INSERT INTO users (email) VALUES ('new@x')",
        "SELECT (SELECT string_agg(line, ',') FROM logs), (SELECT count(*) FROM users)",
        "SELECT email FROM users ORDER BY id",
        [("old", 2)],
        [("seed@x",), ("new@x",)],
        new_hidden=["logs"],
    ),
    Case(
        "rename_table",
        USERS,
        [{"rename_table": {"from": "users", "to": "people"}}],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO people (email) VALUES ('new@x')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email FROM people ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x",), ("old@x",), ("new@x",)],
        new_hidden=["users"],
    ),
    Case(
        "add_column",
        USERS,
        [
            {
                "add_column": {
                    "table": "users",
                    "column": {
                        "name": "plan",
                        "type": "text",
                        "default": "'free'",
                        "nullable": False,
                    },
                }
            },
            {
                "add_column": {
                    "table": "users",
                    "up": "upper(split_part(email, '@', 1))",
                    "column": {"name": "handle", "type": "text", "nullable": False},
                }
            },
        ],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email, plan, handle) VALUES ('new@x', 'pro', 'nn')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email, plan, handle FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x", "free", "SEED"), ("old@x", "free", "OLD"), ("new@x", "pro", "nn")],
    ),
    Case(
        "drop_column",
        USERS.replace("name text", "name text NOT NULL"),
        [
            {
                "drop_column": {
                    "table": "users",
                    "column": "name",
                    "down": "split_part(email, '@', 1)",
                }
            }
        ],
        "INSERT INTO users (email, name) VALUES ('old@x', 'Old')",
        "INSERT INTO users (email) VALUES ('new@x')",
        "SELECT email, name FROM users ORDER BY id",
        "SELECT * FROM users ORDER BY id",
        [("seed@x", "Seed"), ("old@x", "Old"), ("new@x", "new")],
        [(1, "seed@x", "1.50"), (2, "old@x", "0"), (3, "new@x", "0")],
    ),
    Case(
        "rename_column",
        USERS,
        [{"rename_column": {"table": "users", "from": "email", "to": "email_address"}}],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email_address) VALUES ('new@x')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email_address FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x",), ("old@x",), ("new@x",)],
    ),
    Case(
        "alter_column",
        USERS,
        [
            {
                "alter_column": {
                    "table": "users",
                    "column": "price",
                    "name": "price_cents",
                    "type": "bigint",
                    "nullable": False,
                    "check": "price_cents >= 0",
                    "unique": True,
                    "up": "(price::numeric * 100)::bigint",
                    "down": "(price_cents / 100.0)::text",
                }
            }
        ],
        "INSERT INTO users (email, price) VALUES ('old@x', '2.25')",
        "INSERT INTO users (email, price_cents) VALUES ('new@x', 300)",
        "SELECT email, price::numeric FROM users ORDER BY id",
        "SELECT email, price_cents FROM users ORDER BY id",
        [("seed@x", 1.5), ("old@x", 2.25), ("new@x", 3)],
        [("seed@x", 150), ("old@x", 225), ("new@x", 300)],
    ),
    Case(
        "create_index",
        USERS,
        [
            {
                "create_index": {
                    "name": "users_email_idx",
                    "table": "users",
                    "columns": ["email"],
                    "unique": True,
                }
            }
        ],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email) VALUES ('new@x')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email, (SELECT indisvalid FROM pg_index WHERE indexrelid = "
        "to_regclass(current_setting('zd.base') || '.users_email_idx')) FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x", True), ("old@x", True), ("new@x", True)],
    ),
    Case(
        "drop_index",
        USERS + "CREATE INDEX users_name_idx ON users (name);",
        [{"drop_index": {"name": "users_name_idx"}}],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email) VALUES ('new@x')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x",), ("old@x",), ("new@x",)],
    ),
    Case(
        "add_constraint",
        USERS,
        [
            {
                "add_constraint": {
                    "table": "users",
                    "name": "users_email_at",
                    "check": "email LIKE '%@%'",
                }
            },
            {"add_constraint": {"table": "users", "name": "users_email_key", "unique": ["email"]}},
        ],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email) VALUES ('new@x')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x",), ("old@x",), ("new@x",)],
    ),
    Case(
        "drop_constraint",
        USERS + "ALTER TABLE users ADD CONSTRAINT users_name_len CHECK (length(name) < 100);",
        [{"drop_constraint": {"table": "users", "name": "users_name_len"}}],
        "INSERT INTO users (email, name) VALUES ('old@x', 'Old')",
        "INSERT INTO users (email, name) VALUES ('new@x', 'New')",
        "SELECT name FROM users ORDER BY id",
        "SELECT name FROM users ORDER BY id",
        [("Seed",), ("Old",), ("New",)],
        [("Seed",), ("Old",), ("New",)],
    ),
    Case(
        "raw_sql",
        USERS,
        [
            {
                "raw_sql": {
                    "sql": "ALTER TABLE users ADD COLUMN IF NOT EXISTS note text",
                    "rollback": "ALTER TABLE users DROP COLUMN IF EXISTS note",
                }
            }
        ],
        "INSERT INTO users (email) VALUES ('old@x')",
        "INSERT INTO users (email, note) VALUES ('new@x', 'hi')",
        "SELECT email FROM users ORDER BY id",
        "SELECT email, note FROM users ORDER BY id",
        [("seed@x",), ("old@x",), ("new@x",)],
        [("seed@x", None), ("old@x", None), ("new@x", "hi")],
    ),
]


def _client(url: str, schema: str, base: str) -> psycopg.Connection:
    return psycopg.connect(
        url, autocommit=True, options=f"-c search_path={schema} -c zd.base={base}"
    )


def _rows(conn: psycopg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [
        tuple(
            float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, int) else v
            for v in row
        )
        for row in conn.execute(sql).fetchall()
    ]


@pytest.mark.parametrize("finish", ["complete", "rollback"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_operation_old_and_new_side_by_side(
    mig_db: str, tmp_path: Path, case: Case, finish: str
) -> None:
    base = f"s_{case.id}_{finish}"
    options = Options(base_schema=base, batch_size=1, batch_delay=0)
    with psycopg.connect(mig_db, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {base}; SET search_path = {base}; {case.setup}")
    path = tmp_path / f"0001_{case.id}.yaml"
    path.write_text(yaml.safe_dump({"operations": case.ops}))

    vschema = api.start(mig_db, path, service="web", version="v2", options=options)
    assert vschema == f"{base}_0001_{case.id}"
    assert api.schema_for(mig_db, "v2", options=options) == vschema
    assert api.schema_for(mig_db, "v1", options=options) == base
    with _client(mig_db, base, base) as old, _client(mig_db, vschema, base) as new:
        old.execute(case.old_write)
        new.execute(case.new_write)
        assert _rows(old, case.old_read) == case.old_sees
        assert _rows(new, case.new_read) == case.new_sees
        for rel in case.new_hidden:
            assert new.execute("SELECT to_regclass(%s)", (rel,)).fetchone() == (None,)

    if finish == "complete":
        api.complete(mig_db, options=options)
        with _client(mig_db, vschema, base) as new:
            assert _rows(new, case.new_read) == case.new_sees
            new.execute(case.new_write.replace("new@x", "after@x").replace("300", "301"))
        with psycopg.connect(mig_db, autocommit=True) as admin:
            leftovers = admin.execute(
                "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname = %s AND a.attname LIKE '\\_zd%%' AND NOT a.attisdropped",
                (base,),
            ).fetchone()
            assert leftovers == (0,)
    else:
        api.rollback(mig_db, options=options)
        with _client(mig_db, base, base) as old:
            assert _rows(old, case.old_read) == case.old_sees
            old.execute(case.old_write.replace("old@x", "again@x").replace("2.25", "2.26"))
        with psycopg.connect(mig_db, autocommit=True) as admin:
            gone = admin.execute("SELECT to_regnamespace(%s)", (vschema,)).fetchone()
            assert gone == (None,)
    status = api.status(mig_db, options=options)
    assert status["active"] is None
    assert status["history"][0]["phase"] == ("completed" if finish == "complete" else "rolled_back")
