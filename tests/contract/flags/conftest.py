"""One flag store per driver, each isolated: a fresh SQLite file, a unique Redis key prefix, a
unique PostgreSQL table prefix."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zerodown.flags.stores import FlagStore

StoreFactory = Callable[[], FlagStore]


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one isolated place, as several controller processes would."""
    unique = uuid.uuid4().hex[:10]
    opened: list[FlagStore] = []

    def factory() -> FlagStore:
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
        opened.append(s)
        return s

    try:
        yield factory
    finally:
        for s in opened:
            s.close()
        if opened and request.param == "redis":
            import redis

            with redis.Redis.from_url(request.getfixturevalue("redis_url")) as r:
                keys = list(r.scan_iter(match=f"test:{unique}:*"))
                if keys:
                    r.delete(*keys)
        elif opened and request.param == "postgres":
            import psycopg

            with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as c:
                for table in ("flags", "flag_usage", "flag_meta", "flag_audit"):
                    c.execute(f"DROP TABLE IF EXISTS t{unique}_{table}")


@pytest.fixture
def store(open_store: StoreFactory) -> FlagStore:
    return open_store()
