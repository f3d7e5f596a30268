"""`zerodown demo`: the whole job in one command, on embedded defaults.

A throwaway workspace with the sample app; v1 starts; steady traffic flows from the built-in load
generator; v2 goes out as a canary (5%, 25%, 50%, 100%) and is promoted; v3, which fails a fifth
of its requests, goes out next and is aborted; a summary table shows what every phase cost.
Every process it started is stopped at the end, whatever happens.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from zerodown.cli.client import Client, shut_down, start_controller
from zerodown.loadgen import LoadGenerator
from zerodown.paths import Paths

console = Console()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_spec(port: int) -> dict[str, Any]:
    return {
        "service": "shop",
        "instances": 2,
        "run": {
            "command": [sys.executable, "app.py", "{port}", "{version}"],
            "env": {"ZD_APP_FAULTS": json.dumps({"v3": {"fail_rate": 0.2}})},
            "drain": "2s",
            "stop_timeout": "5s",
        },
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 25},
            "readiness": {"http": "/ready", "period": "1s"},
            "liveness": {"http": "/healthz", "period": "5s"},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
        "analysis": {
            "templates": {
                "health": {
                    "metrics": [
                        {
                            "name": "error-rate",
                            "provider": "router",
                            "query": "error_rate",
                            "interval": "1s",
                            "failure_condition": "result > 0.05",
                            "min_samples": 5,
                        }
                    ]
                }
            }
        },
        "strategy": {
            "canary": {
                "analysis": {"templates": ["health"]},
                "steps": [
                    {"set_weight": 5},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 25},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 50},
                    {"pause": {"duration": "3s"}},
                    {"set_weight": 100},
                ],
            }
        },
    }


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0
    outcome: str = ""


def _active(status: dict[str, Any]) -> bool:
    return status["rollout"]["phase"] in ("progressing", "paused")


class Tour:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        demo = resources.files("zerodown.demo")
        (root / "app.py").write_text(demo.joinpath("app.py").read_text())
        (root / "zerodown.yaml").write_text(yaml.safe_dump(demo_spec(self.port), sort_keys=False))
        self.paths = Paths.for_spec(root / "zerodown.yaml")
        self.spec = demo_spec(self.port)
        self.phases: list[Phase] = []

    def say(self, text: str) -> None:
        console.print(f"[bold cyan]▶[/] {text}")

    def wait(self, client: Client, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = client.get("/api/status")
            if predicate(state["status"]):
                return state
            time.sleep(0.2)
        raise TimeoutError("the demo waited too long; see .zerodown/logs/")

    def phase(self, name: str) -> Phase:
        if self.phases:
            self.phases[-1].ended = time.time()
        self.phases.append(Phase(name, time.time()))
        return self.phases[-1]

    def run(self) -> int:
        self.say(
            f"workspace {self.root}: sample app + zerodown.yaml (canary 5% → 25% → 50% → 100%)"
        )
        start_controller(self.paths)
        with Client(self.paths) as client:
            p = self.phase("start v1")
            client.post("/api/deploy", {"version": "v1", "spec": self.spec, "who": "demo"})
            self.wait(client, lambda s: s["stable"] == "v1")
            p.outcome = "serving"
            self.say(f"v1 serves on http://127.0.0.1:{self.port}; sending 200 requests/s")
            with LoadGenerator(
                f"http://127.0.0.1:{self.port}/", rate=200, connections=8, max_seconds=80
            ) as load:
                time.sleep(1)
                p = self.phase("canary v2")
                self.say("deploy v2 as a canary: weight 5%, 25%, 50%, 100%, pausing 3s at each")
                client.post("/api/deploy", {"version": "v2", "spec": self.spec, "who": "demo"})
                state = self.wait(
                    client, lambda s: s["rollout"]["phase"] != "progressing" or s["stable"] == "v2"
                )
                p.outcome = state["status"]["rollout"]["phase"]
                self.say(f"v2: {state['status']['rollout']['reason']}")
                time.sleep(1)
                p = self.phase("canary v3 (faulty)")
                self.say(
                    "deploy v3, which fails 20% of its requests; analysis watches its error rate"
                )
                client.post("/api/deploy", {"version": "v3", "spec": self.spec, "who": "demo"})
                state = self.wait(
                    client, lambda s: not _active(s) and s["rollout"]["version"] == "v3"
                )
                p.outcome = state["status"]["rollout"]["reason"]
                self.say(f"v3 {state['status']['rollout']['phase']}: {p.outcome}")
                time.sleep(1.5)
                self.phase("back on v2").outcome = "serving"
                time.sleep(1)
            self.phases[-1].ended = time.time()
            self.summary(load.report)
        return 0

    def summary(self, report: Any) -> None:
        table = Table(title="zerodown demo")
        for column in ("phase", "seconds", "requests", "failed", "served by", "outcome"):
            table.add_column(column)
        for p in self.phases:
            samples = [s for s in report.samples if p.started <= s.at < (p.ended or time.time())]
            versions = {}
            for s in samples:
                if not s.failed:
                    versions[s.version] = versions.get(s.version, 0) + 1
            served = ", ".join(f"{v} {n}" for v, n in sorted(versions.items()))
            table.add_row(
                p.name,
                f"{(p.ended or time.time()) - p.started:.1f}",
                str(len(samples)),
                str(sum(1 for s in samples if s.failed)),
                served or "-",
                p.outcome,
            )
        console.print(table)
        from_v3 = sum(1 for s in report.failed if s.version == "v3")
        console.print(
            f"{report.total} requests in all, {len(report.failed)} failed, {from_v3} of them "
            "v3's own injected errors while analysis had it at 5% of traffic."
        )
        console.print(
            "Try it by hand: [bold]zerodown init[/] writes zerodown.yaml and app.py; then "
            "`zerodown up --version v1`, `zerodown deploy v2 --wait`, `zerodown status`, "
            "`zerodown history`, `zerodown rollback --wait`, `zerodown down`."
        )

    def cleanup(self) -> None:
        try:
            shut_down(self.paths, who="demo", timeout=60)
        except Exception as exc:
            console.print(f"[yellow]cleanup: {exc}[/]")


def run_demo(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="zerodown-demo-"))
    tour = Tour(root)
    try:
        return tour.run()
    finally:
        tour.cleanup()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
