"""The state-store contract, on SQLite and on PostgreSQL (the machine's server, or the embedded
pgserver, in a database made for this test session): each store made through its registry, as
the controller makes it. Rows, transactions, bounded failures, and the leader lease with its
fencing token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from support.services import fresh_database
from zerodown import drivers
from zerodown.core import commands
from zerodown.core.errors import NotLeader, StoreUnavailable
from zerodown.core.model import Instance, InstancePhase, RolloutPhase, ServiceStatus
from zerodown.core.ports import LeaseStore, StateStore
from zerodown.paths import Paths
from zerodown.spec.model import Spec
from zerodown.store import postgres as postgres_module
from zerodown.store import sqlite as sqlite_module

MakeStore = Callable[[], StateStore]


@pytest.fixture(scope="session")
def store_database(postgres_url: str) -> Iterator[str]:
    """A fresh database for this test session's PostgreSQL stores, dropped afterwards."""
    with fresh_database(postgres_url, prefix="zd_store") as url:
        yield url


def _context(root: Path, url: str) -> drivers.DriverContext:
    spec = Spec.model_validate(
        {"service": "shop", "run": {"command": ["app"]}, "state": {"url": url}}
    )
    paths = Paths.for_spec(root / "zerodown.yaml")
    paths.ensure()
    return drivers.DriverContext(spec=spec, paths=paths)


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Opens the store of one test (as often as asked: several controllers on one store)."""
    if request.param == "sqlite":
        url = "sqlite:///.zerodown/state.db"
    else:
        url = request.getfixturevalue("store_database")
        with psycopg.connect(url, autocommit=True) as conn:  # each test starts empty
            conn.execute("DROP SCHEMA IF EXISTS zerodown CASCADE")
    ctx = _context(tmp_path, url)
    opened: list[StateStore] = []

    def make() -> StateStore:
        store = drivers.stores.create(drivers.store_kind(url), ctx)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _instance(iid: str, **changes: object) -> Instance:
    return replace(
        Instance(id=iid, release="v1", address="127.0.0.1:9000", launched_at=1.0), **changes
    )  # type: ignore[arg-type]


def test_a_saved_status_its_revision_and_its_records_come_back(make_store: MakeStore) -> None:
    store = make_store()
    assert store.status("shop") == ServiceStatus("shop")
    number = store.add_revision("shop", version="v1", strategy="rolling", spec={"a": 1}, now=5.0)
    assert number == 1
    status = commands.start_rollout(
        ServiceStatus("shop"), revision=1, version="v1", strategy="rolling", now=5.0
    )
    store.save(status, [(5.0, 1, "deploy", "deploy v1"), (5.5, 1, "step", "one")])
    again = make_store()  # another connection sees the whole save
    assert again.status("shop") == status
    assert [(e.kind, e.message, e.revision) for e in again.events("shop")] == [
        ("deploy", "deploy v1", 1),
        ("step", "one", 1),
    ]
    finished = commands.replace_phase(status.rollout, RolloutPhase.COMPLETED, 9.0, "done")  # type: ignore[arg-type]
    store.save(replace(status, rollout=finished, stable="v1"))
    [revision] = again.revisions("shop")
    assert (revision.number, revision.version, revision.outcome, revision.reason) == (
        1,
        "v1",
        "completed",
        "done",
    )
    assert revision.finished_at == 9.0 and revision.spec == {"a": 1}
    assert store.add_revision("shop", version="v2", strategy="canary", spec={}, now=10.0) == 2
    store.set_revision_schema("shop", 2, "shop_v2")
    assert again.revision("shop", 2).db_schema == "shop_v2"  # type: ignore[union-attr]
    assert again.revision("shop", 3) is None
    assert again.status("other") == ServiceStatus("other")


def test_instances_are_kept_by_service_replaced_whole_and_deleted(make_store: MakeStore) -> None:
    store = make_store()
    store.put_instance("shop", _instance("shop-v1-b"))
    store.put_instance("shop", _instance("shop-v1-a"))
    store.put_instance("cart", _instance("cart-v1-a"))
    running = _instance("shop-v1-b", phase=InstancePhase.RUNNING, ready=True, handle="12:34")
    store.put_instance("shop", running)
    assert [i.id for i in store.instances("shop")] == ["shop-v1-a", "shop-v1-b"]
    assert store.instances("shop")[1] == running
    store.delete_instance("shop-v1-a")
    store.delete_instance("shop-v1-a")  # deleting what is gone changes nothing
    assert [i.id for i in make_store().instances("shop")] == ["shop-v1-b"]


def test_events_come_oldest_first_after_an_id_and_within_a_limit(make_store: MakeStore) -> None:
    store = make_store()
    store.add_events("shop", [(float(n), None, "error", f"e{n}") for n in range(5)])
    store.add_events("cart", [(9.0, None, "error", "other service")])
    events = store.events("shop")
    assert [e.message for e in events] == ["e0", "e1", "e2", "e3", "e4"]
    assert [e.message for e in store.events("shop", limit=2)] == ["e3", "e4"]
    assert [e.message for e in store.events("shop", after=events[2].id)] == ["e3", "e4"]


def test_the_lease_has_one_holder_and_a_new_token_at_each_change(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    assert isinstance(one, LeaseStore) and isinstance(two, LeaseStore)
    first = one.claim("shop", "host:1", ttl=0.15, url="http://a")
    assert first is not None and first.holder == "host:1"
    assert two.claim("shop", "host:2", ttl=0.15, url="http://b") is None  # it runs: a standby
    renewed = one.claim("shop", "host:1", ttl=0.15)
    assert renewed is not None and (renewed.token, renewed.since) == (first.token, first.since)
    seen = two.leadership("shop")
    assert seen.lease is not None and seen.lease.holder == "host:1"
    assert [c.id for c in seen.controllers] == ["host:1", "host:2"]
    assert seen.lease.expires_at > seen.now
    deadline = time.monotonic() + 5
    taken = None
    while taken is None and time.monotonic() < deadline:  # until the lease runs out
        taken = two.claim("shop", "host:2", ttl=30)
    assert taken is not None and taken.token == first.token + 1
    assert one.claim("shop", "host:1", ttl=30) is None  # the old leader cannot take it back
    # A holder known to be gone (its process died on this machine) is replaced at once.
    dead = one.claim("shop", "host:1", ttl=30, dead="host:2")
    assert dead is not None and dead.token == taken.token + 1
    # A released lease is free at once; the next holder's token is larger still.
    one.release("shop", "host:1")
    after = two.claim("shop", "host:2", ttl=30)
    assert after is not None and after.token == dead.token + 1
    assert [c.id for c in two.leadership("shop").controllers] == ["host:2"]


def test_every_write_is_fenced_by_the_lease_in_its_own_transaction(make_store: MakeStore) -> None:
    leader, standby = make_store(), make_store()
    assert isinstance(leader, LeaseStore) and isinstance(standby, LeaseStore)
    lease = leader.claim("shop", "host:1", ttl=0.15)
    assert lease is not None
    leader.fence("shop", "host:1", lease.token)
    standby.fence("shop", "host:2", None)
    leader.put_instance("shop", _instance("shop-v1-a"))
    with pytest.raises(NotLeader, match="standby"):
        standby.put_instance("shop", _instance("shop-v1-b"))
    # The leader is paused past its lease and the standby takes over: every write of the old
    # leader fails from then on, and changes nothing.
    taken = None
    deadline = time.monotonic() + 5
    while taken is None and time.monotonic() < deadline:
        taken = standby.claim("shop", "host:2", ttl=30)
    assert taken is not None
    standby.fence("shop", "host:2", taken.token)
    writes: list[Callable[[], object]] = [
        lambda: leader.save(ServiceStatus("shop", stable="v9"), [(1.0, None, "x", "late")]),
        lambda: leader.add_events("shop", [(1.0, None, "x", "late")]),
        lambda: leader.put_instance("shop", _instance("shop-v1-late")),
        lambda: leader.delete_instance("shop-v1-a"),
        lambda: leader.add_revision("shop", version="v9", strategy="rolling", spec={}, now=1.0),
    ]
    for write in writes:
        with pytest.raises(NotLeader, match="no longer holds the lease"):
            write()
    assert standby.status("shop").stable is None
    assert [i.id for i in standby.instances("shop")] == ["shop-v1-a"]
    assert standby.events("shop") == [] and standby.revisions("shop") == []
    standby.put_instance("shop", _instance("shop-v1-b"))  # the new leader writes
    assert len(leader.instances("shop")) == 2  # and the old one still reads


def test_a_lock_held_elsewhere_is_store_unavailable_within_seconds(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "LOCK_TIMEOUT_MS", 200)  # shortened for the test
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT", 0.2)
    store = make_store()
    store.save(ServiceStatus("shop"))
    if hasattr(store, "path"):  # SQLite: another process's write lock
        import sqlite3

        other: object = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # type: ignore[attr-defined]
        release = other.commit  # type: ignore[attr-defined]
    else:  # PostgreSQL: another session's row lock on the status
        other = psycopg.connect(store.url)  # type: ignore[attr-defined]
        other.execute("SELECT * FROM zerodown.status FOR UPDATE")  # type: ignore[attr-defined]
        release = other.rollback  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.save(ServiceStatus("shop", stable="v1"))
    assert time.monotonic() - started < 10
    assert store.status("shop").stable is None  # reads are not blocked
    release()
    other.close()  # type: ignore[attr-defined]
    store.save(ServiceStatus("shop", stable="v1"))  # and it works again at once
    assert store.status("shop").stable == "v1"


def test_an_unreachable_postgresql_is_store_unavailable_at_once(tmp_path: Path) -> None:
    from support.services import free_port

    url = f"postgresql://zerodown@127.0.0.1:{free_port()}/zerodown"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"postgresql://zerodown@127\.0\.0\.1:\d+/zerodown"):
        drivers.stores.create("postgresql", _context(tmp_path, url))
    assert time.monotonic() - started < 10
