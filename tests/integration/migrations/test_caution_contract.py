"""Caution that follows risk, through the real CLI, controller and PostgreSQL: `zerodown plan`
foresees it, the deploy that starts a migration whose contract drops data says so in its checks,
status and decision log, and the next deploy does not contract it by itself: a person does
(`zerodown migrate complete`), then the deploy goes through."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dbapp_kit import dbapp_workspace, fresh_database, migration_phases

from support.workspace import Workspace

pytestmark = pytest.mark.slow

USERS = {
    "create_table": {
        "table": "users",
        "columns": [
            {"name": "id", "type": "bigserial", "primary_key": True},
            {"name": "name", "type": "text"},
            {"name": "email", "type": "text"},
        ],
    }
}
AUDIT = {"create_table": {"table": "audit", "columns": [{"name": "id", "type": "bigserial"}]}}
DROP_AUDIT = {"drop_table": {"table": "audit"}}


def write(ws: Workspace, name: str, *ops: dict[str, object]) -> None:
    folder = ws.root / "migrations"
    for old in folder.glob("0001_create_users.yaml"):
        old.unlink()  # the kit's first migration: this test brings its own
    (folder / name).write_text(yaml.safe_dump({"operations": list(ops)}))


@pytest.fixture
def service(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Workspace, str]]:
    with fresh_database(postgres_url) as db:
        ws = dbapp_workspace(tmp_path, db)
        spec = yaml.safe_load(ws.spec_file.read_text())
        spec["instances"] = 1
        spec["run"]["drain"] = "300ms"
        ws.write_spec(spec)
        write(ws, "0001_users_and_audit.yaml", USERS, AUDIT)
        yield ws, db
        ws.teardown()


def test_an_irreversible_contract_raises_caution_and_waits_for_a_person(
    service: tuple[Workspace, str],
) -> None:
    ws, db = service
    ws.zd("up", "--version", "a1")
    write(ws, "0002_drop_audit.yaml", DROP_AUDIT)

    plan = ws.zd("plan", "--version", "a2").stdout
    assert "  2. migrate: start 0002_drop_audit (expand)\n" in plan
    assert "  1. migrate: contract 0001_users_and_audit\n" in plan
    assert (
        "caution\n  - raised by 0002_drop_audit (drop_table audit drops its rows at complete): "
        "the contract waits for `zerodown migrate complete`\n"
    ) in plan

    ws.zd("deploy", "a2", "--wait")
    state = ws.status()
    reason = state["status"]["rollout"]["checks"]["migrate"]["reason"]
    assert "caution raised (drop_table audit drops its rows at complete)" in reason
    assert state["caution"].startswith("caution raised (drop_table audit")
    assert "caution raised" in ws.zd("status").stdout
    assert migration_phases(db)["0002_drop_audit"] == "started"

    held = ws.zd("deploy", "a3", "--wait", check=False)
    assert held.returncode == 3, held.stdout + held.stderr
    assert "caution.irreversible.manual_contract holds it for a person" in held.stderr
    assert ws.status()["status"]["stable"] == "a2"
    assert migration_phases(db)["0002_drop_audit"] == "started"  # not contracted

    person = [sys.executable, "-m", "zerodown.cli.main", "migrate", "complete", "--database", db]
    subprocess.run(person, check=True, capture_output=True, timeout=60)
    ws.zd("deploy", "a3", "--wait")
    assert ws.status()["status"]["stable"] == "a3"
    assert migration_phases(db)["0002_drop_audit"] == "completed"
