"""The FlagStore contract, run against SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from zerodown.flags.model import DefaultStrategy, Flag, GradualRolloutStrategy
from zerodown.flags.stores import FlagExists, FlagNotFound, FlagStore


def test_create_get_list(store: FlagStore) -> None:
    assert store.list_flags() == []
    assert store.get_flag("a") is None
    created = store.create_flag(Flag(key="b", description="second"), actor="ann")
    store.create_flag(Flag(key="a", enabled=True, strategies=(DefaultStrategy(),)), actor="ann")
    assert created.created_at is not None and created.changed_at is not None
    assert [f.key for f in store.list_flags()] == ["a", "b"]
    got = store.get_flag("b")
    assert got is not None and got.description == "second" and got.created_at == created.created_at
    with pytest.raises(FlagExists):
        store.create_flag(Flag(key="a"), actor="bob")


def test_update_keeps_created_at_and_bumps_version(store: FlagStore) -> None:
    created = store.create_flag(Flag(key="f"), actor="ann")
    v1 = store.version()
    updated = store.update_flag(
        Flag(key="f", enabled=True, strategies=(GradualRolloutStrategy(rollout=25),)), actor="bob"
    )
    assert store.version() > v1
    assert updated.created_at == created.created_at
    got = store.get_flag("f")
    assert got is not None and got.enabled and got.strategies[0].rollout == 25  # type: ignore[union-attr]
    with pytest.raises(FlagNotFound):
        store.update_flag(Flag(key="nope"), actor="bob")


def test_delete(store: FlagStore) -> None:
    store.create_flag(Flag(key="f"), actor="ann")
    store.delete_flag("f", actor="ann")
    assert store.get_flag("f") is None
    with pytest.raises(FlagNotFound):
        store.delete_flag("f", actor="ann")


def test_audit_records_who_when_before_after(store: FlagStore) -> None:
    store.create_flag(Flag(key="f"), actor="ann", note="new checkout")
    store.update_flag(Flag(key="f", enabled=True), actor="bob")
    store.create_flag(Flag(key="g"), actor="cy")
    store.delete_flag("f", actor="dee")
    entries = store.audit()
    assert [(e.action, e.key, e.actor) for e in entries] == [
        ("delete", "f", "dee"),
        ("create", "g", "cy"),
        ("update", "f", "bob"),
        ("create", "f", "ann"),
    ]
    delete, _, update, create = entries
    assert create.before is None and create.after is not None and create.note == "new checkout"
    assert update.before is not None and update.before["enabled"] is False
    assert update.after is not None and update.after["enabled"] is True
    assert delete.after is None and delete.before is not None
    assert all(e.at.tzinfo is not None for e in entries)
    assert [e.action for e in store.audit(key="f", limit=2)] == ["delete", "update"]


def test_snapshot_version_matches_flags(store: FlagStore) -> None:
    v0, flags0 = store.snapshot()
    assert flags0 == []
    store.create_flag(Flag(key="f"), actor="ann")
    v1, flags1 = store.snapshot()
    assert v1 > v0 and [f.key for f in flags1] == ["f"]


def test_mark_evaluated_does_not_bump_version(store: FlagStore) -> None:
    store.create_flag(Flag(key="f"), actor="ann")
    v = store.version()
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    store.mark_evaluated(["f", "unknown"], when)
    store.mark_evaluated(["f"], datetime(2026, 4, 1, tzinfo=UTC))  # older: ignored
    assert store.version() == v
    got = store.get_flag("f")
    assert got is not None and got.last_evaluated_at == when
    assert [f.key for f in store.list_flags()] == ["f"]


def test_wait_for_change_wakes_on_a_write(store: FlagStore) -> None:
    v = store.version()
    assert store.wait_for_change(v, timeout=0.2) == v  # times out quietly
    woke: list[int] = []  # checked here: an assert inside the thread would be lost
    t = threading.Thread(target=lambda: woke.append(store.wait_for_change(v, timeout=60)))
    t.start()
    time.sleep(0.2)
    store.create_flag(Flag(key="f"), actor="ann")
    t.join(15)
    # Joined long before its 60 s timeout could end it, with the new version: the write woke it.
    assert not t.is_alive() and woke == [store.version()] and woke[0] != v


def test_two_instances_share_one_truth(open_store: Callable[[], FlagStore]) -> None:
    writer, reader = open_store(), open_store()
    v = reader.version()
    woke: list[int] = []
    t = threading.Thread(target=lambda: woke.append(reader.wait_for_change(v, timeout=10)))
    t.start()
    time.sleep(0.1)
    writer.create_flag(Flag(key="shared", enabled=True), actor="ann")
    t.join(15)
    assert woke and woke[0] == writer.version()
    got = reader.get_flag("shared")
    assert got is not None and got.enabled
    assert [e.key for e in reader.audit()] == ["shared"]


def test_concurrent_writers_lose_no_change(open_store: Callable[[], FlagStore]) -> None:
    a, b = open_store(), open_store()
    a.create_flag(Flag(key="f"), actor="ann")
    errors: list[BaseException] = []

    def write(s: FlagStore, who: str) -> None:
        try:
            for i in range(10):
                s.update_flag(Flag(key="f", description=f"{who}{i}"), actor=who)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s, w)) for s, w in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    entries = a.audit(limit=100)
    assert len(entries) == 21
    # Each update's `before` is the previous update's `after`: writes were serialised.
    updates = list(reversed(entries))[1:]
    for prev, cur in itertools.pairwise(updates):
        assert cur.before == prev.after
