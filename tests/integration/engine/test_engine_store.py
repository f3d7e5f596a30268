"""The state store fails fast and clearly: a lock held by another process or thread is a
StoreUnavailable within the (here shortened) limits, never a hang, and the status the API shows
raises it too, for the API to answer 503."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.workspace import Workspace
from zerodown.api.controller import Controller, state_summary
from zerodown.core.errors import StoreUnavailable
from zerodown.paths import Paths
from zerodown.spec.load import load_spec
from zerodown.store import sqlite as store_module
from zerodown.store.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.05)
    monkeypatch.setattr(store_module, "LOCK_WAIT", 0.05)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    yield opened
    opened.close()


def test_a_lock_held_by_another_process_fails_a_write_fast_and_reads_still_work(
    store: SqliteStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match=r"database is locked \(another process"):
            store.add_events("shop", [(1.0, None, "error", "x")])
        assert store.status("shop").service == "shop"  # WAL: readers are not blocked
        other.execute("COMMIT")
    finally:
        other.close()
    store.add_events("shop", [(1.0, None, "error", "x")])  # and it works again at once
    assert [e.kind for e in store.events("shop")] == ["error"]


def test_a_connection_held_by_another_thread_is_an_error_not_a_hang(store: SqliteStore) -> None:
    assert store._lock.acquire()
    try:
        with pytest.raises(StoreUnavailable, match="busy"):
            store.status("shop")
    finally:
        store._lock.release()


def test_the_status_the_api_shows_raises_store_unavailable(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)  # the spec only: no process is started
    controller = Controller(Paths.for_spec(ws.spec_file), load_spec(ws.spec_file))
    try:
        summary = state_summary(controller)
        assert summary["controller"] == {
            "last_pass": None,
            "stalled_since": None,
            "last_error": None,
        }
        assert controller.store._lock.acquire()
        try:
            with pytest.raises(StoreUnavailable):
                state_summary(controller)
        finally:
            controller.store._lock.release()
    finally:
        controller.store.close()
