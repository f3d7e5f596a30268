"""An Alembic project drives the rollout (`migrations: {alembic: alembic.ini}`): the demo app's
column rename, written as an Alembic revision, runs expand-contract under load with 0 failed
requests, and alembic_version follows each contract."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbapp_kit import (
    UserLoad,
    dbapp_workspace,
    fresh_database,
    migration_phases,
    missing_rows,
    rows,
)

from support.workspace import Workspace

pytest.importorskip("alembic", reason="Alembic is not installed (pip install 'zerodown[alembic]')")
pytestmark = pytest.mark.slow

PROJECT = Path(__file__).parents[2] / "data" / "alembic_dbapp"


@pytest.fixture
def db(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
def service(tmp_path: Path, db: str) -> Iterator[Workspace]:
    ws = dbapp_workspace(tmp_path, db, min_ready="1s")
    shutil.copytree(PROJECT, tmp_path / "alembic", ignore=shutil.ignore_patterns("later"))
    spec = __import__("yaml").safe_load(ws.spec_file.read_text())
    spec["migrations"] = {"database": db, "alembic": "alembic/alembic.ini"}
    ws.write_spec(spec)
    yield ws
    ws.teardown()


def _alembic_version(db: str) -> list[tuple[str, ...]]:
    return [tuple(r) for r in rows(db, "SELECT version_num FROM alembic_version")]


def test_alembic_revision_renames_a_column_under_load(service: Workspace, db: str) -> None:
    service.zd("up", "--version", "v1")
    assert migration_phases(db) == {"alembic_u1": "started"}
    shutil.copy(PROJECT / "later" / "u2_rename_email.py", service.root / "alembic" / "versions")
    planned = service.zd("plan", "--version", "v2").stdout  # reads the Alembic project too
    assert "alembic_u2" in planned, planned
    with UserLoad(service.port, rate=150) as load:
        time.sleep(0.5)
        service.zd("deploy", "v2", "--wait")
        time.sleep(0.5)
    assert [(o.kind, o.status, o.version, o.error) for o in load.failed] == []
    assert load.versions("create")["v1"] > 0 and load.versions("create")["v2"] > 0
    assert migration_phases(db) == {"alembic_u1": "completed", "alembic_u2": "started"}
    assert _alembic_version(db) == [("u1",)]  # u2 is expanded, not contracted
    migrate = service.status()["status"]["rollout"]["checks"]["migrate"]
    assert migrate["detail"]["schema"] == "public_alembic_u2", migrate

    service.zd("deploy", "v3", "--wait")  # the next deploy contracts u2
    assert migration_phases(db)["alembic_u2"] == "completed"
    assert _alembic_version(db) == [("u2",)]
    assert missing_rows(db, "public.users", "email_address", load.created) == []
