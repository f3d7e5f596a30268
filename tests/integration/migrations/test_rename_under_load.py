"""Issue 5's rollout proof: a deploy renames a column while both versions of a PostgreSQL-backed
app serve writes and reads under load: 0 failed requests, no row lost, and the old version keeps
writing through the whole rollout. Then the next deploy contracts; an aborted deploy (and a
release that never gets ready on the new schema) rolls the migration back and loses nothing
either side wrote. Load: `dbapp_kit.UserLoad`, 300 req/s of POST /users and GET /users/<id>
through the router, where any answer but the exact expected one counts as failed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbapp_kit import (
    UserLoad,
    add_migration,
    dbapp_process,
    dbapp_workspace,
    fresh_database,
    migrate_status,
    migration_phases,
    missing_rows,
    rows,
)

from support.services import free_port
from support.workspace import Workspace, api_post
from zerodown.migrations import api

pytestmark = pytest.mark.slow

OLD_SCHEMA = "public_0001_create_users"
NEW_SCHEMA = "public_0002_rename_email"


@pytest.fixture
def db(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
def service(tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    # The spec names the database by ${VAR}; the controller reads it from its environment.
    monkeypatch.setenv("ZD_DBAPP_TEST_DATABASE", db)
    # min_ready holds each new instance a while before the next old one goes: both versions
    # serve side by side long enough to see (and, in the abort test, to abort).
    ws = dbapp_workspace(tmp_path, "${ZD_DBAPP_TEST_DATABASE}", min_ready="1s")
    yield ws
    ws.teardown()


@pytest.fixture
def slow_service(tmp_path: Path, db: str) -> Iterator[Workspace]:
    ws = dbapp_workspace(tmp_path, db, min_ready="2s")
    yield ws
    ws.teardown()


def test_dbapp_old_and_new_side_by_side_by_hand(db: str, tmp_path: Path) -> None:
    """The app against `zerodown migrate` run by hand: what the rollout will do, step by step."""
    add_migration(tmp_path, "0001_create_users.yaml")
    add_migration(tmp_path, "0002_rename_email.yaml")
    assert api.start(db, tmp_path / "0001_create_users.yaml", service="shop", version="v1") == (
        OLD_SCHEMA
    )
    with dbapp_process(free_port(), "v1", db, OLD_SCHEMA) as v1_url:
        v1_port = int(v1_url.rsplit(":", 1)[1])
        api.complete(db)
        new = api.start(db, tmp_path / "0002_rename_email.yaml", service="shop", version="v2")
        assert new == NEW_SCHEMA
        with dbapp_process(free_port(), "v2", db, NEW_SCHEMA) as v2_url:
            v2_port = int(v2_url.rsplit(":", 1)[1])
            with UserLoad(v1_port, rate=100) as old, UserLoad(v2_port, rate=100) as young:
                time.sleep(1.5)
            assert old.failed == [] and young.failed == [], old.failed[:3] + young.failed[:3]
            assert old.versions("create") and young.versions("create")
            # each version reads what the other wrote, through its own column name
            with httpx.Client(timeout=5) as client:
                for url, load in ((v2_url, old), (v1_url, young)):
                    some = next(iter(load.created.items()))
                    answer = client.get(f"{url}/users/{some[0]}").json()
                    assert (answer["name"], answer["email"]) == some[1]
        # v2 left: roll back, v1 loses nothing and still serves
        api.rollback(db)
        with UserLoad(v1_port, rate=100, max_requests=100) as after:
            time.sleep(0.5)
        assert after.failed == []
    created = {**old.created, **young.created, **after.created}
    assert missing_rows(db, "public.users", "email", created) == []


def test_deploy_renames_a_column_under_load(service: Workspace, db: str) -> None:
    service.zd("up", "--version", "v1")
    assert migration_phases(db) == {"0001_create_users": "started"}
    add_migration(service.root / "migrations", "0002_rename_email.yaml")
    with UserLoad(service.port) as load:
        time.sleep(1)
        began = time.time()
        service.zd("deploy", "v2", "--wait")
        done = time.time()
        time.sleep(1.5)
    print("v1 -> v2:", load.summary())
    assert len(load.ops) >= 600
    assert [(o.kind, o.status, o.version, o.error) for o in load.failed] == []
    # both versions wrote side by side: v1 kept writing after v2's first write
    first_v2 = min(o.at for o in load.ops if o.version == "v2" and o.kind == "create")
    assert load.versions("create", since=first_v2, until=done)["v1"] > 0
    assert load.versions("create", since=began, until=done)["v2"] > 0
    assert set(load.versions(since=done)) == {"v2"}
    status = migrate_status(db)
    assert status["active"]["name"] == "0002_rename_email"
    assert status["active"]["phase"] == "started"
    assert migration_phases(db) == {
        "0001_create_users": "completed",
        "0002_rename_email": "started",
    }
    migrate = service.status()["status"]["rollout"]["checks"]["migrate"]
    assert migrate["state"] == "passed", migrate
    assert migrate["detail"]["schema"] == NEW_SCHEMA, migrate
    # instances carry their connection tag; v1's connections closed when its instances stopped
    assert api.old_version_connections(db, "shop", "v2") > 0
    assert api.old_version_connections(db, "shop", "v1") == 0
    # the base table still has `email` (the rename is not done yet), and every row is there
    assert missing_rows(db, "public.users", "email", load.created) == []

    # the next deploy contracts: the column is renamed for real while v2 and v3 serve
    with UserLoad(service.port) as again:
        time.sleep(1)
        service.zd("deploy", "v3", "--wait")
        done = time.time()
        time.sleep(1)
    print("v2 -> v3:", again.summary())
    assert [(o.kind, o.status, o.version, o.error) for o in again.failed] == []
    assert set(again.versions(since=done)) == {"v3"}
    assert migration_phases(db) == {
        "0001_create_users": "completed",
        "0002_rename_email": "completed",
    }
    assert migrate_status(db)["active"] is None
    columns = rows(
        db,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position",
    )
    assert [c[0] for c in columns] == ["id", "name", "email_address"]
    assert rows(db, f"SELECT 1 FROM pg_namespace WHERE nspname = '{OLD_SCHEMA}'") == []
    created = {**load.created, **again.created}
    assert missing_rows(db, "public.users", "email_address", created) == []
    # history shows each release's schema; going back past the contract is refused
    history = json.loads(service.zd("history", "--json").stdout)
    assert {h["version"]: h["db_schema"] for h in history} == {
        "v1": OLD_SCHEMA,
        "v2": NEW_SCHEMA,
        "v3": NEW_SCHEMA,
    }
    refused = service.zd("rollback", "--to", "1", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    # and v3 reads every row ever written, by either version
    with httpx.Client(base_url=service.url, timeout=5) as client:
        count = client.get("/users/count")
        assert count.headers["x-version"] == "v3"
        assert count.json()["count"] == len(created)


def test_abort_mid_rollout_rolls_the_migration_back(slow_service: Workspace, db: str) -> None:
    service = slow_service
    service.zd("up", "--version", "v1")
    add_migration(service.root / "migrations", "0002_rename_email.yaml")
    with UserLoad(service.port) as load:
        time.sleep(1)
        service.zd("deploy", "v2")
        service.wait_for(
            lambda: load.versions("create")["v2"] >= 20, timeout=60, what="v2 to serve writes"
        )
        # Through the API, not the CLI: the rollout stays open a few seconds (min_ready) after
        # v2 serves, and a CLI's start-up on a loaded machine can take longer than that.
        api_post(service, "/api/abort", {"who": "test"})  # raises unless the abort was taken
        service.wait_for(
            lambda: {i["release"] for i in service.status()["instances"]} == {"v1"},
            timeout=60,
            what="the v2 instances to leave",
        )
        service.wait_for(
            lambda: migration_phases(db).get("0002_rename_email") == "rolled_back",
            timeout=30,
            what="the migration to be rolled back",
        )
        done = time.time()
        time.sleep(1)
    print("v1 -> v2 aborted:", load.summary())
    assert [(o.kind, o.status, o.version, o.error) for o in load.failed] == []
    assert load.versions("create")["v2"] >= 20
    assert set(load.versions(since=done)) == {"v1"}
    assert migrate_status(db)["active"] is None
    assert rows(db, f"SELECT 1 FROM pg_namespace WHERE nspname = '{NEW_SCHEMA}'") == []
    # rows written by v1 and by v2 (through its view) are all in the table v1 uses
    assert missing_rows(db, "public.users", "email", load.created) == []


def test_rollback_after_the_rollout_then_deploy_again(service: Workspace, db: str) -> None:
    """v2 started 0002 and completed its rollout; `zerodown rollback` brings v1 back (its schema
    is still there, 0002 was not contracted); deploying v2 again must not contract 0002 under
    v1's feet."""
    service.zd("up", "--version", "v1")
    add_migration(service.root / "migrations", "0002_rename_email.yaml")
    service.zd("deploy", "v2", "--wait")
    with UserLoad(service.port) as load:
        time.sleep(1)
        service.zd("rollback", "--wait")
        back = time.time()
        time.sleep(1)
        again = time.time()
        service.zd("deploy", "v2", "--wait")
        done = time.time()
        time.sleep(1)
    print("v2 -> v1 (rollback) -> v2:", load.summary())
    assert [(o.kind, o.status, o.version, o.error) for o in load.failed] == []
    assert set(load.versions(since=back, until=again)) == {"v1"}
    assert set(load.versions(since=done)) == {"v2"}
    assert migration_phases(db)["0002_rename_email"] == "started"
    assert missing_rows(db, "public.users", "email", load.created) == []


def test_release_not_ready_for_the_new_schema_fails_and_rolls_back(tmp_path: Path, db: str) -> None:
    """A release that still calls the column `email` never gets ready on the new schema (its
    /ready runs the app's own query): the rollout fails, v1 keeps serving, 0002 is rolled back;
    the fixed release that follows starts 0002 afresh."""
    service = dbapp_workspace(tmp_path, db, min_ready="1s", progress_deadline="5s")
    try:
        service.zd("up", "--version", "v1")
        add_migration(service.root / "migrations", "0002_rename_email.yaml")
        with UserLoad(service.port) as load:
            time.sleep(1)
            result = service.zd("deploy", "v2-stale", "--wait", check=False, timeout=90)
            service.wait_for(
                lambda: migration_phases(db).get("0002_rename_email") == "rolled_back",
                timeout=30,
                what="the migration to be rolled back",
            )
            time.sleep(1)
        print("v1 -> v2-stale:", load.summary())
        fixed = service.zd("deploy", "v2", "--wait", check=False)
        with httpx.Client(base_url=service.url, timeout=5) as client:
            answer = client.get(f"/users/{next(iter(load.created))}")
    finally:
        service.teardown()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not ready" in result.stderr
    assert [(o.kind, o.status, o.version, o.error) for o in load.failed] == []
    assert set(load.versions()) == {"v1"}
    assert missing_rows(db, "public.users", "email", load.created) == []
    # the fixed release goes out next: the rolled-back migration starts afresh
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert migration_phases(db)["0002_rename_email"] == "started"
    some_id, (name, email) = next(iter(load.created.items()))
    assert answer.headers["x-version"] == "v2"
    assert answer.json() == {"id": some_id, "name": name, "email": email}
