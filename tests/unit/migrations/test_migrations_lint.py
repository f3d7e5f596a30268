"""`zerodown migrate lint`: squawk plus zerodown's own checks; clear errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zerodown.cli.migrate import migrate_app
from zerodown.migrations.lint import own_checks, split_sql

runner = CliRunner()


def test_split_keeps_lines_and_ignores_semicolons_in_quotes() -> None:
    sql = (
        "-- c;\nSELECT 'a;b';\n\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
    )
    stmts = split_sql(sql)
    assert [s.line for s in stmts] == [2, 4]
    assert stmts[1].text.endswith("LANGUAGE sql")


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("ALTER TABLE users ADD COLUMN x int NOT NULL", "zd-not-null-without-default"),
        ("CREATE INDEX i ON users (x)", "zd-index-not-concurrent"),
        ("ALTER TABLE users ADD COLUMN u uuid DEFAULT gen_random_uuid()", "zd-volatile-default"),
        ("ALTER TABLE users ALTER COLUMN x TYPE bigint", "zd-type-change"),
        ("ALTER TABLE users ALTER COLUMN x SET NOT NULL", "zd-set-not-null"),
        ("ALTER TABLE users RENAME COLUMN a TO b", "zd-rename"),
        ("ALTER TABLE users DROP COLUMN a", "zd-drop-column"),
        ("ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0)", "zd-constraint-not-valid"),
        ("ALTER TABLE users ADD COLUMN a text", "zd-lock-timeout"),
    ],
)
def test_own_checks_find(sql: str, rule: str) -> None:
    assert rule in {f.rule for f in own_checks(sql + ";", "f.sql")}


@pytest.mark.parametrize(
    "sql",
    [
        "SET lock_timeout = '500ms'; ALTER TABLE users ADD COLUMN a text DEFAULT 'x' NOT NULL;",
        "SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY i ON users (x);",
        "CREATE TABLE t (id bigint); CREATE INDEX i ON t (id); ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout = '1s'; ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
    ],
)
def test_own_checks_pass_safe_sql(sql: str) -> None:
    assert own_checks(sql, "f.sql") == []


@pytest.mark.slow
def test_cli_lint_runs_squawk_and_own_checks(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text("SELECT 1;\nCREATE INDEX i ON users (x);\n")
    result = runner.invoke(migrate_app, ["lint", str(path), "--json"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert {f["source"] for f in findings} == {"squawk", "zerodown"}
    assert all(f["line"] == 2 for f in findings)
    assert "require-concurrent-index-creation" in {f["rule"] for f in findings}


def test_cli_lint_clean_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.sql"
    path.write_text("SELECT 1;\n")
    assert runner.invoke(migrate_app, ["lint", str(path)]).exit_code == 0


def test_cli_lint_migration_file_checks_its_raw_sql(tmp_path: Path) -> None:
    path = tmp_path / "0001_raw.yaml"
    path.write_text("operations:\n  - raw_sql: {sql: 'ALTER TABLE users DROP COLUMN a'}\n")
    result = runner.invoke(migrate_app, ["lint", str(path)])
    assert result.exit_code == 1 and "zd-drop-column" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["lint", "/nonexistent/x.sql"], "cannot read the SQL file"),
        (
            ["plan", "/nonexistent/x.yaml", "--database", "postgresql://a@127.0.0.1:1/b"],
            "cannot read the migration file",
        ),
        (["status", "--database", ""], "no database given"),
        (
            ["start", "x.yaml", "--database", "postgresql://a@h/b", "--lock-timeout", "soon"],
            "--lock-timeout",
        ),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = runner.invoke(migrate_app, args, env={"DATABASE_URL": ""})
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert "Traceback" not in result.output


def test_cli_bad_migration_file_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "0001_bad.yaml"
    path.write_text("operations:\n  - drop_table:\n      tabel: users\n")
    result = runner.invoke(
        migrate_app, ["plan", str(path), "--database", "postgresql://a@127.0.0.1:1/b"]
    )
    assert result.exit_code == 2
    assert (
        f"{path}:3: operations[0].drop_table.tabel: unknown field; did you mean 'table'?"
        in result.stderr
    )


def test_cli_prints_json_schema() -> None:
    result = runner.invoke(migrate_app, ["json-schema"])
    assert result.exit_code == 0 and json.loads(result.stdout)["title"] == "zerodown migration"
