"""`zerodown migrate` commands against a real database (through CliRunner on migrate_app)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from zerodown.cli.migrate import migrate_app

runner = CliRunner()


def test_lifecycle_from_the_command_line(mig_db: str, tmp_path: Path) -> None:
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(
            "CREATE SCHEMA cli; CREATE TABLE cli.users (id bigserial PRIMARY KEY, email text);"
            "INSERT INTO cli.users (email) VALUES ('a@x')"
        )
    path = tmp_path / "0002_rename_email.yaml"
    path.write_text(
        "operations:\n"
        "  - rename_column: {table: users, from: email, to: email_address}\n"
        "  - add_column: {table: users, column: {name: plan, type: text, default: \"'free'\","
        " nullable: false}}\n"
    )
    env = {"DATABASE_URL": mig_db}
    common = ["--schema", "cli"]

    planned = runner.invoke(migrate_app, ["plan", str(path), *common], env=env)
    assert planned.exit_code == 0, planned.output
    assert "-- == complete ==" in planned.stdout and 'RENAME COLUMN "email"' in planned.stdout

    started = runner.invoke(
        migrate_app, ["start", str(path), *common, "--service", "web", "--version", "v2"], env=env
    )
    assert started.exit_code == 0, started.output
    assert started.stdout.strip() == "cli_0002_rename_email"

    status = runner.invoke(migrate_app, ["status", *common, "--json"], env=env)
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["active"]["phase"] == "started"
    assert data["versions"][0] == {
        **data["versions"][0],
        "version": "v2",
        "schema": "cli_0002_rename_email",
    }
    text = runner.invoke(migrate_app, ["status", *common], env=env)
    assert "0002_rename_email (started)" in text.stdout

    again = runner.invoke(migrate_app, ["complete", *common, "--database", mig_db], env={})
    assert again.exit_code == 0, again.output
    nothing = runner.invoke(migrate_app, ["rollback", *common], env=env)
    assert nothing.exit_code == 2
    assert "cannot be rolled back" in nothing.stderr and "Traceback" not in nothing.output
