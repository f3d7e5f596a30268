"""zerodown's own state inside the target database, in the `zerodown` schema.

`migrations` is the history; a partial unique index lets the database itself refuse a second
active migration on the same base schema. `backfills` holds each batched backfill's cursor so a
crashed start resumes where it stopped. `versions` maps an app release to its version schema.
"""

from __future__ import annotations

from typing import Any

ADVISORY_KEY = 0x7A65726F646F776E  # "zerodown" in ASCII: one zerodown migrate run at a time

DDL = """
CREATE SCHEMA IF NOT EXISTS zerodown;
CREATE TABLE IF NOT EXISTS zerodown.migrations (
  id bigserial PRIMARY KEY,
  base_schema text NOT NULL,
  name text NOT NULL,
  version_schema text NOT NULL,
  previous_schema text NOT NULL,
  phase text NOT NULL CHECK (phase IN ('starting', 'started', 'completed', 'rolled_back')),
  definition jsonb NOT NULL,
  snapshot jsonb NOT NULL,
  unsafe boolean NOT NULL DEFAULT false,
  service text,
  version text,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active
  ON zerodown.migrations (base_schema) WHERE phase IN ('starting', 'started');
CREATE UNIQUE INDEX IF NOT EXISTS migrations_completed_once
  ON zerodown.migrations (base_schema, name) WHERE phase = 'completed';
CREATE TABLE IF NOT EXISTS zerodown.backfills (
  migration_id bigint NOT NULL REFERENCES zerodown.migrations (id) ON DELETE CASCADE,
  table_name text NOT NULL,
  cursor text[],
  upper text[],
  rows bigint NOT NULL DEFAULT 0,
  done boolean NOT NULL DEFAULT false,
  PRIMARY KEY (migration_id, table_name)
);
CREATE TABLE IF NOT EXISTS zerodown.versions (
  service text NOT NULL,
  version text NOT NULL,
  schema_name text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (service, version)
);
"""

COLUMNS = (
    "id, base_schema, name, version_schema, previous_schema, phase, definition, snapshot, "
    "unsafe, service, version, started_at, finished_at"
)


def row_dict(row: Any) -> dict[str, Any]:
    keys = [k.strip() for k in COLUMNS.split(",")]
    return dict(zip(keys, row, strict=True))


def active(conn: Any, base: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM zerodown.migrations WHERE base_schema = %s"
        " AND phase IN ('starting', 'started')",
        (base,),
    ).fetchone()
    return row_dict(row) if row else None


def completed(conn: Any, base: str, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM zerodown.migrations WHERE base_schema = %s AND name = %s"
        " AND phase = 'completed'",
        (base, name),
    ).fetchone()
    return row_dict(row) if row else None


def latest_completed(conn: Any, base: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM zerodown.migrations WHERE base_schema = %s"
        " AND phase = 'completed' ORDER BY finished_at DESC, id DESC LIMIT 1",
        (base,),
    ).fetchone()
    return row_dict(row) if row else None


def history(conn: Any, base: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM zerodown.migrations WHERE base_schema = %s"
        " ORDER BY id DESC LIMIT %s",
        (base, limit),
    ).fetchall()
    return [row_dict(r) for r in rows]


def record_version(conn: Any, service: str, version: str, schema_name: str) -> None:
    conn.execute(
        "INSERT INTO zerodown.versions (service, version, schema_name) VALUES (%s, %s, %s)"
        " ON CONFLICT (service, version) DO UPDATE SET schema_name = EXCLUDED.schema_name,"
        " recorded_at = now()",
        (service, version, schema_name),
    )
