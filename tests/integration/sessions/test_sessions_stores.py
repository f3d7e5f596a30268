"""One suite, every session store: memory, SQLite (a real file) and Redis (a real server)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerodown.sessions.format import SessionFormatError, SessionRecord
from zerodown.sessions.store import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    SQLiteSessionStore,
)


class FakeClock:
    def __init__(self, start: float = 1_000_000.0):
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> Iterator[SessionStore]:
    kind = request.param
    s: SessionStore
    if kind == "memory":
        s = MemorySessionStore(idle_timeout=10, absolute_timeout=100, clock=clock)
    elif kind == "sqlite":
        s = SQLiteSessionStore(
            tmp_path / "s.db", idle_timeout=10, absolute_timeout=100, clock=clock
        )
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisSessionStore(
            url,
            prefix=f"test:{uuid.uuid4().hex}:",
            idle_timeout=10,
            absolute_timeout=100,
            clock=clock,
        )
    try:
        yield s
    finally:
        s.close()


def test_set_get_delete(store: SessionStore, clock: FakeClock) -> None:
    assert store.get("a") is None
    store.set("a", SessionRecord(data={"user": "ann", "n": [1, 2]}, created_at=clock()))
    got = store.get("a")
    assert got is not None and got.data == {"user": "ann", "n": [1, 2]}
    store.delete("a")
    assert store.get("a") is None
    store.delete("a")  # idempotent


def test_sliding_expiry(store: SessionStore, clock: FakeClock) -> None:
    store.set("s", SessionRecord(data={"u": 1}, created_at=clock()))
    for _ in range(5):  # 5 touches 8 s apart: 40 s, beyond the 10 s idle timeout
        clock.t += 8
        assert store.get("s") is not None
        store.touch("s")
    clock.t += 10
    assert store.get("s") is None


def test_absolute_timeout_caps_sliding(store: SessionStore, clock: FakeClock) -> None:
    store.set("s", SessionRecord(data={}, created_at=clock()))
    for _ in range(12):
        clock.t += 9
        store.touch("s")
    assert store.get("s") is None  # 108 s > absolute 100 s


def test_touch_after_delete_does_not_resurrect(store: SessionStore, clock: FakeClock) -> None:
    store.set("s", SessionRecord(data={"x": 1}, created_at=clock()))
    store.delete("s")
    store.touch("s")
    assert store.get("s") is None


def test_unknown_fields_survive_a_round_trip(store: SessionStore, clock: FakeClock) -> None:
    record = SessionRecord(data={"u": 1}, created_at=clock(), extra={"flash": ["hi"], "v2": 1})
    store.set("s", record)
    got = store.get("s")
    assert got is not None and got.extra == {"flash": ["hi"], "v2": 1}


def test_non_json_data_is_refused_with_a_reason(store: SessionStore, clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="session data must be JSON"):
        store.set("s", SessionRecord(data={"when": object()}, created_at=clock()))


def test_sqlite_rows_written_by_a_newer_release_are_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteSessionStore(tmp_path / "s.db", clock=clock)
    try:
        store.set("s", SessionRecord(data={}, created_at=clock()))
        doc = json.dumps({"format": 3, "min_reader": 2, "created_at": 1.0, "data": {}})
        with store._db:
            store._db.execute("UPDATE zerodown_sessions SET doc = ?", (doc,))
        with pytest.raises(SessionFormatError, match="format 2"):
            store.get("s")
    finally:
        store.close()


def test_two_sqlite_handles_share_sessions(tmp_path: Path) -> None:
    """Two processes (here two connections) of two releases see the same sessions."""
    clock = FakeClock()
    a = SQLiteSessionStore(tmp_path / "s.db", clock=clock)
    b = SQLiteSessionStore(tmp_path / "s.db", clock=clock)
    try:
        a.set("s", SessionRecord(data={"user": "ann"}, created_at=clock()))
        got = b.get("s")
        assert got is not None and got.data == {"user": "ann"}
    finally:
        a.close()
        b.close()
