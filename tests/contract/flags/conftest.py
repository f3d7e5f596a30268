"""One flag store per driver, each isolated: a fresh SQLite file, a unique Redis key prefix, a
unique PostgreSQL table prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerodown.flags.stores import FlagStore


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlagStore]:
    unique = uuid.uuid4().hex[:10]
    s: FlagStore
    if request.param == "sqlite":
        from zerodown.flags.stores.sqlite import SqliteFlagStore

        s = SqliteFlagStore(tmp_path / "flags.db")
    elif request.param == "redis":
        from zerodown.flags.stores.redis import RedisFlagStore

        s = RedisFlagStore(request.getfixturevalue("redis_url"), prefix=f"test:{unique}:")
    else:
        from zerodown.flags.stores.postgres import PostgresFlagStore

        s = PostgresFlagStore(request.getfixturevalue("postgres_url"), prefix=f"t{unique}_")
    try:
        yield s
    finally:
        s.close()
