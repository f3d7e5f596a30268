"""A column rename while both versions write all the time: no failed statement, no lost row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from zerodown.migrations import api
from zerodown.migrations.executor import Options


class Writer(threading.Thread):
    def __init__(self, url: str, schema: str, column: str, tag: str, extra: str = "") -> None:
        super().__init__()
        self.url, self.schema, self.column, self.tag = url, schema, column, tag
        self.extra = extra  # ", handle" for the new version, which must set the new column
        self.written = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(
                self.url, autocommit=True, options=f"-c search_path={self.schema}"
            ) as c:
                while not self.halt.is_set():
                    c.execute(
                        f"INSERT INTO users ({self.column}{self.extra}) VALUES (%s"
                        f"{', %s' if self.extra else ''}) RETURNING {self.column}",
                        (f"{self.tag}-{self.written}@x", *(["h"] if self.extra else [])),
                    ).fetchone()
                    c.execute(f"SELECT count({self.column}) FROM users WHERE id > 0").fetchone()
                    self.written += 1
                    time.sleep(0.001)
        except psycopg.Error as e:
            self.errors.append(str(e))


@pytest.mark.slow  # a second or more: the full suite runs it
def test_rename_column_with_both_versions_writing(mig_db: str, tmp_path: Path) -> None:
    base = "load"
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {base}")
        c.execute(f"CREATE TABLE {base}.users (id bigserial PRIMARY KEY, email text NOT NULL)")
        c.execute(
            f"INSERT INTO {base}.users (email) SELECT 'seed-' || g || '@x'"
            " FROM generate_series(1, 2000) g"
        )
    path = tmp_path / "0002_rename_email.yaml"
    path.write_text(
        "operations:\n"
        "  - rename_column: {table: users, from: email, to: email_address}\n"
        "  - add_column:\n"
        "      table: users\n"
        "      up: split_part(email, '@', 1)\n"
        "      column: {name: handle, type: text, nullable: false}\n"
    )
    options = Options(base_schema=base, batch_size=100, batch_delay=0)
    old = Writer(mig_db, base, "email", "old")
    old.start()
    try:
        time.sleep(0.2)
        vschema = api.start(mig_db, path, service="web", version="v2", options=options)
        new = Writer(mig_db, vschema, "email_address", "new", ", handle")
        new.start()
        try:
            time.sleep(0.5)  # both versions serve side by side
            old.halt.set()  # the rollout finished: the old version is gone
            old.join(10)
            time.sleep(0.2)
            api.complete(mig_db, options=options)
            time.sleep(0.2)
        finally:
            new.halt.set()
            new.join(10)
    finally:
        old.halt.set()
        old.join(10)
    assert old.errors == [] and new.errors == []
    assert old.written > 0 and new.written > 0
    with psycopg.connect(mig_db, autocommit=True) as c:
        rows = c.execute(
            f"SELECT count(*), count(*) FILTER (WHERE email_address LIKE 'old-%%'),"
            f" count(*) FILTER (WHERE email_address LIKE 'new-%%'),"
            f" count(*) FILTER (WHERE handle IS NULL) FROM {base}.users"
        ).fetchone()
    assert rows == (2000 + old.written + new.written, old.written, new.written, 0)
