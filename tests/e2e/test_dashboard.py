"""The dashboard in a real headless Chromium, against a real service paused mid-canary."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from support.services import free_port, require
from support.workspace import Workspace, base_spec
from zerodown.api.dashboard import WEB, mount_dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

# Measured in the background all along the canary; 1000 requests are never reached without load,
# so every measurement is "insufficient" and the analysis stays running, shown with its metric.
ERROR_RATE = {
    "name": "error-rate",
    "provider": "router",
    "query": "error_rate",
    "interval": "1s",
    "count": 300,
    "failure_condition": "result > 0.05",
    "min_samples": 1000,
}
STEPS = [
    {"set_weight": 25},
    {"set_header_route": {"header": "X-Canary", "value": "yes"}},
    {"pause": {}},
    {"set_weight": 100},
]


# ---- serving the files ------------------------------------------------------------------------


def test_mount_serves_the_page_and_its_files() -> None:
    app = FastAPI()
    mount_dashboard(app)

    async def fetch_all() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            paths = ["/", "/static/app.js", "/static/style.css", "/static/missing.js"]
            paths.append("/static/../dashboard.py")
            return {path: await client.get(path) for path in paths}

    answers = asyncio.run(fetch_all())
    page = answers["/"]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        assert answers[path].status_code == 200, path
        assert kind in answers[path].headers["content-type"]
        assert answers[path].headers["x-content-type-options"] == "nosniff"
    assert answers["/static/missing.js"].status_code == 404
    assert answers["/static/../dashboard.py"].status_code == 404


def test_page_needs_nothing_from_outside_and_never_writes_markup() -> None:
    files = {p.name: p.read_text() for p in WEB.iterdir()}
    assert set(files) >= {"index.html", "app.js", "style.css"}
    for name, text in files.items():
        assert not re.search(r"(https?:)?//(?!\$\{state\.router\})[a-z0-9.-]+\.[a-z]{2,}", text), (
            name
        )
        assert "@import" not in text and "url(" not in text, name
    # data reaches the page only through text nodes and attributes
    sinks = r"\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write|\beval\(|new Function"
    assert not re.search(sinks, files["app.js"])
    assert "localStorage" not in files["app.js"]  # the token lives in sessionStorage only


# ---- the page in Chromium ---------------------------------------------------------------------


@pytest.fixture
def paused_canary(tmp_path: Path) -> Iterator[Workspace]:
    """A real service, v1 stable, canary v2 paused at 25% with a header route."""
    root = tmp_path / "svc"
    root.mkdir()
    port = free_port()
    ws = Workspace(root=root, port=port)
    canary = {"steps": STEPS, "analysis": {"templates": ["health"]}}
    analysis = {"templates": {"health": {"metrics": [ERROR_RATE]}}}
    ws.write_spec(base_spec(port, analysis=analysis, strategy={"canary": canary}))
    try:
        ws.zd("up", "--version", "v1")
        ws.zd("deploy", "v2")
        ws.wait_for(
            lambda: (r := ws.status()["status"]["rollout"])["phase"] == "paused" and r["step"] == 2,
            timeout=60,
            what="the canary to pause at step 3",
        )
        yield ws
    finally:
        ws.teardown()


def controller_url(ws: Workspace) -> str:
    return str(json.loads((ws.root / ".zerodown" / "controller.json").read_text())["url"]).rstrip(
        "/"
    )


@pytest.fixture
def dashboard_url(paused_canary: Workspace) -> Iterator[str]:
    """The controller's own page once it mounts the dashboard; until then, a small server that
    serves the same files through `mount_dashboard` and passes `/api/*` to the real controller."""
    upstream = controller_url(paused_canary)
    with httpx.Client(timeout=5) as client:
        if "/static/app.js" in client.get(upstream + "/").text:
            yield upstream + "/"
            return

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the client lives and dies on the server's own event loop
        async with httpx.AsyncClient(base_url=upstream, timeout=10) as client:
            app.state.proxy = client
            yield

    app = FastAPI(lifespan=lifespan)
    mount_dashboard(app)

    @app.api_route("/api/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        answer = await request.app.state.proxy.request(
            request.method,
            f"/api/{path}",
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "the dashboard server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium(profile: Path, *args: str, timeout: float = 60) -> str:
    if not os.path.exists(CHROMIUM):
        require(f"{CHROMIUM} is missing (Debian packages chromium and chromium-driver)")
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Page(HTMLParser):
    """The dumped DOM as text per element id, and the classes of every element."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self.elements: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        self.elements.append({"tag": tag, **attributes})
        if tag not in ("meta", "link", "input", "br", "img"):
            self.stack.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, attributes in self.stack:
            if attributes.get("id"):
                self.texts.setdefault(str(attributes["id"]), []).append(data)

    def text(self, element_id: str) -> str:
        return " ".join("".join(self.texts.get(element_id, [])).split())

    def with_class(self, name: str) -> list[dict[str, str | None]]:
        return [e for e in self.elements if name in (e.get("class") or "").split()]


def test_dashboard_shows_a_paused_canary(
    paused_canary: Workspace, dashboard_url: str, tmp_path: Path
) -> None:
    # Virtual time lets the page's fetches and first refreshes finish before the DOM is dumped.
    dom = chromium(
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        "--dump-dom",
        dashboard_url,
    )
    page = Page(dom)
    assert page.body.get("data-state") == "live", dom[:2000]
    assert page.text("service") == "shop"
    assert page.text("router") == f"http://127.0.0.1:{paused_canary.port}"
    assert page.text("stable") == "v1"
    rollout = page.text("rollout")
    assert "revision 2" in rollout and "v1 → v2" in rollout, rollout
    assert "canary" in rollout and "paused" in rollout, rollout

    steps = page.text("steps")
    assert "set weight 25" in steps.lower() or "25" in steps, steps
    current = page.with_class("current")
    assert len(current) == 1 and current[0].get("aria-current") == "step"
    assert len(page.with_class("done")) == 2

    traffic = page.text("traffic")
    assert "v1 75%" in traffic and "v2 25%" in traffic, traffic
    assert "X-Canary: yes" in traffic, traffic

    instances = page.text("instances")
    assert "v1" in instances and "v2" in instances and "ready" in instances, instances
    assert "2/2 ready" in instances, instances
    checks = page.text("checks")
    assert "analysis:background" in checks and "running" in checks, checks
    assert "error-rate" in checks and "too little traffic" in checks, checks
    assert page.text("events"), "the decision log is empty"
    history = page.text("history")
    assert "v1" in history and "v2" in history, history

    shot = tmp_path / "dashboard.png"
    chromium(
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        "--window-size=1280,900",
        dashboard_url,
    )
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_actions_are_refused_without_the_token(paused_canary: Workspace) -> None:
    """The page sends what a person types; the API, not the page, guards the commands."""
    with httpx.Client(base_url=controller_url(paused_canary), timeout=10) as client:
        refused = client.post("/api/promote", json={"who": "dashboard"})
        assert refused.status_code == 401
        assert ".zerodown/token" in refused.json()["detail"]
    status: dict[str, Any] = paused_canary.status()["status"]
    assert status["rollout"]["phase"] == "paused"
