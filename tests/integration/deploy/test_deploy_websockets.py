"""Issue 13's proof for upgrades: a rolling deploy with 50 WebSocket clients connected and 300
plain requests/s fails no plain request; every WebSocket client ends up on the new release, and
none is cut before `drain.upgraded`."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from support.workspace import Workspace
from zerodown.cli.render import status_view

pytestmark = pytest.mark.slow

BACKEND = Path(__file__).resolve().parents[1] / "router" / "backend_app.py"
CLIENTS = 50
UPGRADED = 5.0  # drain.upgraded


@dataclass
class Session:
    release: str
    opened: float
    closed: float | None = None


@dataclass
class WsClients:
    """50 clients that stay connected and reconnect at once when their connection ends."""

    url: str
    sessions: list[list[Session]] = field(default_factory=lambda: [[] for _ in range(CLIENTS)])
    failed_connects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._all())

    async def _all(self) -> None:
        await asyncio.gather(*(self._one(n) for n in range(CLIENTS)))

    async def _one(self, n: int) -> None:
        while not self.stop.is_set():
            try:
                async with connect(self.url, open_timeout=5) as ws:
                    session = Session(str(await ws.recv()), time.time())
                    self.sessions[n].append(session)
                    try:
                        while not self.stop.is_set():
                            try:
                                await asyncio.wait_for(ws.recv(), 0.2)
                            except TimeoutError:
                                continue
                    except ConnectionClosed:
                        pass
                    session.closed = time.time()
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
                self.failed_connects += 1
                await asyncio.sleep(0.1)

    def on(self, release: str) -> int:
        return sum(1 for s in self.sessions if s and s[-1].release == release and not s[-1].closed)


@pytest.mark.parametrize("workers", [1, 2])  # router.workers: tunnels counted on each, merged
def test_rolling_deploy_with_websockets_and_plain_traffic(tmp_path: Path, workers: int) -> None:
    ws = Workspace.create(tmp_path)
    run = {
        "command": [sys.executable, str(BACKEND), "{port}", "{version}"],
        "drain": {"requests": "2s", "upgraded": f"{UPGRADED}s"},
        "stop_timeout": "5s",
    }
    data = yaml.safe_load(ws.spec_file.read_text())
    data["run"] = run
    if workers > 1:
        data["router"]["workers"] = workers
    ws.write_spec(data)
    try:
        ws.zd("up", "--version", "v1")
        clients = WsClients(f"ws://127.0.0.1:{ws.port}/ws")
        thread = threading.Thread(target=clients.run, daemon=True)
        thread.start()
        ws.wait_for(lambda: clients.on("v1") == CLIENTS, what="50 clients on v1")
        closes_at: dict[str, float] = {}
        shown: list[str] = []
        with ws.load() as load:
            time.sleep(0.5)
            ws.zd("deploy", "v2")
            deploy = time.time()
            while not (clients.on("v2") == CLIENTS and not ws.status().get("tunnels")):
                state = ws.status()
                for t in state.get("tunnels") or []:
                    closes_at.setdefault(t["address"], t["closes_at"])
                    if not shown:
                        # What `zerodown status` prints meanwhile (the CLI's own rendering of
                        # this API answer; starting the CLI here could miss the window).
                        console = Console(width=200, record=True, file=io.StringIO())
                        console.print(status_view(state))
                        shown.append(console.export_text())
                if time.time() - deploy > 60:
                    raise AssertionError(f"not done: {clients.on('v2')} on v2, {closes_at}")
                time.sleep(0.1)
            time.sleep(0.5)
        clients.stop.set()
        thread.join(10)
        report = load.report
        assert report.total >= 1500
        assert [(s.status, s.error) for s in report.failed] == []
        assert clients.failed_connects == 0
        assert all(c[-1].release == "v2" for c in clients.sessions)
        # Every v1 connection lasted until its instance's drain.upgraded, and no longer than
        # needed: its client then reconnected to v2.
        assert len(closes_at) == 2, (closes_at, clients.sessions)
        v1_closed = [s.closed for c in clients.sessions for s in c if s.release == "v1"]
        assert len(v1_closed) == CLIENTS and all(v1_closed)
        assert min(v1_closed) >= min(closes_at.values()) - 0.05  # type: ignore[type-var]
        said = shown[0]
        assert "v1 still holds" in said and "upgraded connections (WebSockets)" in said, said
    finally:
        ws.teardown()
