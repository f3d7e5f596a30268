"""The leader lease as a controller keeps it (engine/leadership.py), on a real SQLite store
shared by several controllers: one leads, the others stand by and write nothing, a controller
of this machine that is gone is replaced at once, and a leader paused past its own deadline
stops acting before anything else happens."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from zerodown.core.errors import NotLeader
from zerodown.core.model import ServiceStatus
from zerodown.engine import leadership as leadership_module
from zerodown.engine.leadership import Leadership, Role
from zerodown.store.sqlite import SqliteStore

HOST = socket.gethostname()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def controller(db: Path, me: str, lease: float = 30.0) -> Leadership:
    return Leadership(
        SqliteStore(db), service="shop", me=me, url=lambda: f"http://{me}", lease=lease
    )


def test_one_leads_the_other_stands_by_and_writes_nothing(db: Path) -> None:
    first, second = controller(db, f"{HOST}:1"), controller(db, "elsewhere:2")
    first.tick()
    second.tick()
    assert (first.role, second.role) == (Role.LEADER, Role.STANDBY)
    assert first.acting and not second.acting
    first.store.save(ServiceStatus("shop", stable="v1"))  # type: ignore[attr-defined]
    with pytest.raises(NotLeader, match="standby"):
        second.store.save(ServiceStatus("shop", stable="v2"))  # type: ignore[attr-defined]
    with pytest.raises(NotLeader):
        second.must_act("launching")
    seen = second.summary()
    assert seen["role"] == "standby" and seen["this"] == "elsewhere:2"
    assert seen["leader"]["id"] == f"{HOST}:1" and seen["leader"]["url"] == f"http://{HOST}:1"
    assert [s["id"] for s in seen["standbys"]] == ["elsewhere:2"]


def test_a_gone_controller_of_this_machine_is_replaced_at_once(db: Path) -> None:
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    dead = controller(db, f"{HOST}:{gone.stdout.strip()}")
    dead.tick()
    assert dead.role is Role.LEADER
    successor = controller(db, "elsewhere:5")
    successor.tick()  # the lease has 30 s to run, but its holder's process is gone
    assert successor.role is Role.LEADER and successor.token == (dead.token or 0) + 1
    here = controller(db, f"{HOST}:6")
    here.tick()  # a holder on another machine is waited out: its pid means nothing here
    assert here.role is Role.STANDBY


def test_a_leader_past_its_own_deadline_stops_acting_and_steps_down(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(leadership_module, "SAFETY", 0.01)
    monkeypatch.setattr(leadership_module.time, "monotonic", lambda: clock[0])
    old, new = controller(db, f"{HOST}:1", lease=0.05), controller(db, "elsewhere:2")
    old.tick()
    assert old.acting
    clock[0] += 60  # paused (SIGSTOP) for a minute: the monotonic clock ran on
    assert not old.acting  # its first thought on waking: it may not act
    with pytest.raises(NotLeader, match="not applying routes"):
        old.must_act("applying routes")
    import time

    time.sleep(0.06)  # and the store's lease ran out meanwhile: another controller takes it
    new.tick()
    assert new.role is Role.LEADER
    with pytest.raises(NotLeader, match="no longer holds the lease"):
        old.store.save(ServiceStatus("shop", stable="late"))  # type: ignore[attr-defined]
    old.tick()
    assert old.role is Role.STANDBY and old.token is None
    assert new.store.status("shop").stable is None  # type: ignore[attr-defined]
