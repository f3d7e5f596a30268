"""Issue 15's proof for two controllers on one PostgreSQL store, on this machine (local
processes, the built-in router): both controllers share the spec directory, so the standby
adopts the router process and the instances the leader started, as a controller restarted
after a crash does.

1. kill -9 of the leader in the middle of a canary under load: the standby takes over, the
   rollout completes, no request fails, and nothing is launched twice (one process per
   instance id, each the store's handle, as many launches as the canary needs);
2. SIGSTOP of the new leader for longer than its lease, a third controller taking over, then
   SIGCONT: the paused one does not act again (it starts no process, stops none, its log says
   it stepped down and shows no action, its own API says standby) while the rollout it had
   started completes under the other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.services import fresh_database
from support.workspace import Workspace, base_spec
from zerodown.engine.leadership import LEASE

pytestmark = pytest.mark.slow

STEPS = [
    {"set_weight": 20},
    {"pause": {"duration": "2s"}},
    {"set_weight": 50},
    {"pause": {"duration": "2s"}},
    {"set_weight": 100},
]


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, prefix="zd_ha") as url:
        yield url


class Controller:
    """A controller process of the workspace, started as `zerodown up` starts one, with its
    own log so that what it did can be read afterwards."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self.log = ws.root / ".zerodown" / "logs" / f"controller-{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "zerodown.api", "-f", str(ws.spec_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ws.root,
            )
        self.pid = self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


def _role(url: str) -> str | None:
    """What the controller at `url` says it is, by its own API."""
    try:
        response = httpx.get(url + "/api/status", timeout=2)
        return str(response.json()["leadership"]["role"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _status(ws: Workspace) -> dict[str, Any] | None:
    """The status from the controller that controller.json names (the leader), or None while
    it does not answer (killed or paused, until the next leader announces itself there)."""
    try:
        url = json.loads((ws.root / ".zerodown" / "controller.json").read_text())["url"]
        response = httpx.get(url + "/api/status", timeout=2)
        response.raise_for_status()
        return dict(response.json())
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None


def _leadership(ws: Workspace) -> dict[str, Any]:
    state = _status(ws)
    return dict(state["leadership"]) if state else {"leader": None, "standbys": []}


def _leader_pid(ws: Workspace) -> int | None:
    leader = _leadership(ws)["leader"]
    return int(leader["id"].rpartition(":")[2]) if leader else None


def _stable(ws: Workspace) -> str | None:
    state = _status(ws)
    return state["status"]["stable"] if state else None


def _processes(state: Path) -> dict[str, tuple[int, int]]:
    """The instance processes of this state directory: instance id -> (pid, parent pid)."""
    marker = f"ZERODOWN_STATE_DIR={state.resolve()}".encode()
    found: dict[str, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
            leads_group = os.getpgid(int(entry.name)) == int(entry.name)
        except OSError:
            continue
        if marker not in environ or not leads_group:
            continue
        iid = next(e for e in environ if e.startswith(b"ZERODOWN_INSTANCE=")).partition(b"=")[2]
        assert iid.decode() not in found, f"{iid!r} runs twice"
        found[iid.decode()] = (int(entry.name), int(stat[stat.rindex(")") + 2 :].split()[1]))
    return found


def _wait_phase(ws: Workspace, version: str, step: int) -> None:
    def there() -> bool:
        state = _status(ws)
        rollout = state["status"]["rollout"] if state else None
        return rollout is not None and rollout["version"] == version and rollout["step"] >= step

    ws.wait_for(
        there,
        timeout=60,
        what=f"the canary of {version} at step {step}",
    )


def test_the_standby_takes_over_a_canary_and_a_paused_leader_never_acts_again(
    tmp_path: Path, database: str
) -> None:
    ws = Workspace.create(tmp_path)
    spec = base_spec(ws.port, strategy={"canary": {"steps": STEPS}}, state={"url": database})
    ws.write_spec(spec)
    state = ws.root / ".zerodown"
    controllers: list[Controller] = []
    try:
        ws.zd("up", "--version", "v1")
        first = ws.controller_pid()
        standby = Controller(ws, "b")
        controllers.append(standby)
        ws.wait_for(
            lambda: any(s["id"].endswith(f":{standby.pid}") for s in _leadership(ws)["standbys"]),
            what="the second controller to show as a standby",
        )
        assert _leader_pid(ws) == first
        human = ws.zd("status").stdout
        assert f":{first} since" in human and f":{standby.pid}" in human, human
        assert "standby" in human, human

        # 1. kill -9 of the leader in the middle of a canary under load.
        with ws.load(rate=300, connections=16) as load:
            ws.zd("deploy", "v2")
            _wait_phase(ws, "v2", 1)  # 20% on v2, paused for 2 s
            killed_at = time.monotonic()
            os.kill(first, signal.SIGKILL)
            ws.wait_for(lambda: _leader_pid(ws) == standby.pid, what="the standby to lead")
            takeover = time.monotonic() - killed_at
            ws.wait_for(lambda: _stable(ws) == "v2", timeout=60, what="v2 to complete")
        print(f"takeover after kill -9: {takeover:.2f}s; {load.report.summary()}")
        assert takeover < 10
        assert len(load.report.failed) == 0, load.report.failed[:5]
        assert load.report.total >= 1500
        launched = ws.launched("v2")
        ws.wait_for(lambda: set(_processes(state)) == set(launched), what="v1 to be retired")
        running = _processes(state)
        stored = {i["id"]: i["handle"] for i in ws.status()["instances"]}
        assert len(launched) == 2, launched  # each canary instance launched once, none again
        assert set(running) == set(stored) == set(launched)
        assert {iid: f"{pid}:" for iid, (pid, _) in running.items()} == {
            iid: handle.partition(":")[0] + ":" for iid, handle in stored.items()
        }

        # 2. SIGSTOP of the leader past its lease, a third controller takes over, SIGCONT.
        third = Controller(ws, "c")
        controllers.append(third)
        ws.wait_for(
            lambda: any(s["id"].endswith(f":{third.pid}") for s in _leadership(ws)["standbys"]),
            what="the third controller to show as a standby",
        )
        ws.zd("deploy", "v3")
        _wait_phase(ws, "v3", 1)
        old_url = _leadership(ws)["leader"]["url"]
        os.kill(standby.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        ws.wait_for(lambda: _leader_pid(ws) == third.pid, timeout=30, what="the third to lead")
        assert time.monotonic() - stopped_at >= LEASE - 1  # it waited the lease out
        time.sleep(max(0.0, stopped_at + LEASE + 1.5 - time.monotonic()))
        woke_log = standby.log.stat().st_size
        its_own = {i for i, (_, ppid) in _processes(state).items() if ppid == standby.pid}
        os.kill(standby.pid, signal.SIGCONT)
        ws.wait_for(
            lambda: _role(old_url) == "standby",
            what="the paused leader to report standby",
        )
        ws.wait_for(lambda: _stable(ws) == "v3", timeout=60, what="v3 to complete")
        after = standby.log.read_bytes()[woke_log:].decode(errors="replace")
        assert "steps down to standby" in after, after
        for acted in ("stopped shop-", "router started", "cannot start", "leads shop"):
            assert acted not in after, after
        started_after = {i for i, (_, ppid) in _processes(state).items() if ppid == standby.pid}
        assert started_after <= its_own  # it launched nothing once awake
        assert len(ws.launched("v3")) == 2
        assert _leader_pid(ws) == third.pid
    finally:
        ws.teardown()
        for controller in controllers:
            with_cont = controller.process.poll() is None
            if with_cont:
                os.kill(controller.pid, signal.SIGCONT)
            controller.kill()
        print(json.dumps({"logs": [str(c.log) for c in controllers]}))


def _left(ws: Workspace) -> list[str]:
    """What still runs for this workspace: instances (by their environment), routers (they name
    the state directory) and controllers (they name the spec file)."""
    state = (ws.root / ".zerodown").resolve()
    marker = f"ZERODOWN_STATE_DIR={state}".encode()
    names = (str(state).encode(), str(ws.spec_file).encode())
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[0] == "Z":
            continue
        if marker in environ or any(name in cmdline for name in names):
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace")
            left.append(f"{entry.name}: {argv[-120:]}")
    return left


def test_a_second_controller_on_the_same_sqlite_state_stands_by(tmp_path: Path) -> None:
    """Before the lease, a controller started by hand beside a running one (`zerodown up`
    refuses to) ran a second reconcile loop on the same state; now it is a standby that refuses
    commands, naming the leader, takes over when the leader is killed, and `zerodown down`
    leaves nothing running: not the standby, not the router either leader started."""
    ws = Workspace.create(tmp_path)  # the default store: .zerodown/state.db
    controllers: list[Controller] = []
    try:
        # Started together (nothing deployed: only the lease matters here): one leads.
        controllers += [Controller(ws, "a"), Controller(ws, "b")]

        def settled() -> tuple[int, str] | None:
            seen = _leadership(ws)
            standbys = [s for s in seen["standbys"] if s["url"]]
            if seen["leader"] is None or len(standbys) != 1:
                return None
            return int(seen["leader"]["id"].rpartition(":")[2]), standbys[0]["url"]

        leader, standby_url = ws.wait_for(settled, what="one leader and one standby")
        assert leader in {c.pid for c in controllers}
        assert _role(standby_url) == "standby"
        token = (ws.root / ".zerodown" / "token").read_text().strip()
        refused = httpx.post(
            standby_url + "/api/pause",
            json={"who": "test"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert refused.status_code == 503
        assert f"the leader is {_leadership(ws)['leader']['id']}" in refused.json()["detail"]

        # kill -9 of the leader: the standby leads and adopts the router the leader started.
        ws.wait_for(lambda: (ws.root / ".zerodown" / "router.pid").exists(), what="the router")
        (killed,) = [c for c in controllers if c.pid == leader]
        killed.kill()
        (other,) = [c for c in controllers if c.pid != leader]
        ws.wait_for(lambda: _leader_pid(ws) == other.pid, what="the standby to lead")
        third = Controller(ws, "c")  # and `down` with a standby beside the leader
        controllers.append(third)
        ws.wait_for(
            lambda: any(s["id"].endswith(f":{third.pid}") for s in _leadership(ws)["standbys"]),
            what="the third controller to show as a standby",
        )
        down = ws.zd("down", check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        assert _left(ws) == [], down.stdout  # nothing survives `down`
    finally:
        for controller in controllers:
            controller.kill()
        ws.teardown()  # a safety net: kills whatever a failed run left
