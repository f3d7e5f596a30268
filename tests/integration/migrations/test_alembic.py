"""Alembic revisions run as zerodown migrations on real PostgreSQL, and Alembic agrees after."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from zerodown.migrations import api
from zerodown.migrations.actions import MigrationError
from zerodown.migrations.model import Migration

pytest.importorskip("alembic", reason="Alembic is not installed (pip install 'zerodown[alembic]')")

PROJECT = Path(__file__).parents[2] / "data" / "alembic_project"


def _alembic_head(url: str) -> str | None:
    """What Alembic itself reads as the database's current revision."""
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _next(url: str, ini: Path, allow: tuple[str, ...] = ()) -> Migration:
    found = api.pending(url, ini, allow=allow)
    assert isinstance(found, Migration)
    return found


@pytest.mark.slow
def test_alembic_revisions_run_expand_contract_and_stamp(mig_db: str, tmp_path: Path) -> None:
    info = conninfo_to_dict(mig_db)
    url = f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"
    project = tmp_path / "alembic_project"
    shutil.copytree(PROJECT, project)
    ini = project / "alembic.ini"

    # a1: create_table, through start and complete like a native migration
    first = _next(mig_db, ini)
    assert first.name == "alembic_a1"
    api.start(mig_db, first, service="web", version="v1")
    api.complete(mig_db)
    assert _alembic_head(url) == "a1"
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute("INSERT INTO users (email, age) SELECT 'u' || g, g FROM generate_series(1, 50) g")

    # b2: add column, rename, type change, index, check; the old version keeps its shape
    second = _next(mig_db, ini)
    assert second.name == "alembic_b2"
    schema = api.start(mig_db, second, service="web", version="v2")
    assert _next(mig_db, ini).name == "alembic_b2"  # an active revision is still the pending one
    assert _alembic_head(url) == "a1"  # not stamped before it is contracted
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute("INSERT INTO public.users (email, age) VALUES ('old@x', 7)")  # the old version
        c.execute(f"SET search_path = {schema}")
        c.execute("INSERT INTO users (email_address, age) VALUES ('new@x', 8)")  # the new one
        row = c.execute("SELECT plan, age FROM users WHERE email_address = 'old@x'").fetchone()
        assert row == ("free", 7)
        count = c.execute("SELECT count(*) FROM users").fetchone()
        assert count == (52,)
    api.complete(mig_db)
    assert _alembic_head(url) == "b2"
    with psycopg.connect(mig_db, autocommit=True) as c:
        kind = c.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'users' AND column_name = 'age'"
        ).fetchone()
        assert kind == ("bigint",)
        assert c.execute(
            "SELECT count(*) FROM users WHERE email_address IS NOT NULL"
        ).fetchone() == (52,)

    # c3 drops a column: refused with the revision's file and line unless the spec allows it
    with pytest.raises(MigrationError) as refused:
        api.pending(mig_db, ini)
    message = str(refused.value)
    assert "c3_drop_age.py:11: drop_column users.age" in message
    assert "allow: [drop_column]" in message
    third = _next(mig_db, ini, allow=("drop_column",))
    api.start(mig_db, third, service="web", version="v3")
    api.rollback(mig_db)  # undone: age is still there, Alembic still at b2
    assert _alembic_head(url) == "b2"
    api.start(mig_db, _next(mig_db, ini, allow=("drop_column",)), service="web", version="v3")
    api.complete(mig_db)
    assert _alembic_head(url) == "c3"
    assert api.pending(mig_db, ini) is None

    # raw op.execute is refused with its line; allowed, it runs alone and marked unsafe
    (project / "versions" / "d4_raw.py").write_text(
        '"""raw"""\nfrom alembic import op\n\nrevision = "d4"\ndown_revision = "c3"\n\n\n'
        "def upgrade() -> None:\n    op.execute(\"COMMENT ON TABLE users IS 'people'\")\n"
    )
    with pytest.raises(MigrationError, match=r"d4_raw.py:9: op.execute runs raw SQL"):
        api.pending(mig_db, ini)
    raw = _next(mig_db, ini, allow=("execute",))
    assert [op.kind for op in raw.ops] == ["raw_sql"]
    api.start(mig_db, raw, service="web", version="v4")
    api.complete(mig_db)
    assert _alembic_head(url) == "d4"
