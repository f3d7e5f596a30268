"""The dashboard in a real headless Chromium, against a real service paused mid-canary."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from support.servers import serve_asgi
from support.services import free_port, require
from support.workspace import Workspace, base_spec
from zerodown.api.app import make_app
from zerodown.api.controller import Controller
from zerodown.api.dashboard import WEB, mount_dashboard
from zerodown.paths import Paths
from zerodown.spec.load import load_spec

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
# A gate that passes; its reason quotes the command, so markup reaches the page as data.
HOSTILE = "<img id=pwned src=x onerror=document.title='pwned'>"
GATE = {"command": ["true", HOSTILE]}
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
        # (the SVG namespace is a name, never fetched)
        outside = r"(https?:)?//(?!\$\{state\.router\}|www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}"
        assert not re.search(outside, text), name
        assert "@import" not in text and "url(" not in text, name
    # data reaches the page only through text nodes and attributes
    sinks = r"\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write|\beval\(|new Function"
    for script in ("app.js", "charts.js"):
        assert not re.search(sinks, files[script]), script
    assert "localStorage" not in files["app.js"]  # the token lives in sessionStorage only


# ---- the page in Chromium ---------------------------------------------------------------------


@pytest.fixture
def chromium_installed() -> None:
    """Checked before a service is started for nothing."""
    if not os.path.exists(CHROMIUM):
        require(f"{CHROMIUM} is missing (Debian packages chromium and chromium-driver)")


@pytest.fixture
def paused_canary(tmp_path: Path) -> Iterator[Workspace]:
    """A real service, v1 stable, canary v2 paused at 25% with a header route."""
    root = tmp_path / "svc"
    root.mkdir()
    port = free_port()
    ws = Workspace(root=root, port=port)
    canary = {"steps": STEPS, "analysis": {"templates": ["health"]}}
    analysis = {"templates": {"health": {"metrics": [ERROR_RATE]}}}
    ws.write_spec(base_spec(port, analysis=analysis, strategy={"canary": canary}, gate=GATE))
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
def dashboard_url(paused_canary: Workspace) -> str:
    """The controller's own address: it serves the page at `/` (make_app mounts the dashboard)."""
    url = controller_url(paused_canary) + "/"
    with httpx.Client(timeout=5) as client:
        page = client.get(url)
    assert page.status_code == 200 and "/static/app.js" in page.text, page.text[:300]
    return url


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


@pytest.mark.slow
def test_dashboard_shows_a_paused_canary(
    chromium_installed: None, paused_canary: Workspace, dashboard_url: str, tmp_path: Path
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
    assert "weight 25%" in steps, steps
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
    assert HOSTILE in checks, checks  # shown as text ...
    assert not [e for e in page.elements if e.get("id") == "pwned"]  # ... never as markup
    log = page.text("events")  # newest first: the pause above the launch of v1
    assert 0 <= log.find("paused until") < log.find("launch 2 instances of v1"), log
    history = page.text("history")
    assert "v1" in history and "v2" in history, history
    plan = page.text("plan")  # GET /api/plan: the rollback plan of the rollout under way
    assert "rollout of v2 (canary) over v1" in plan and "route change only" in plan, plan

    for section in ("stable", "rollout", "reason", "decision", "traffic", "steps", "instances"):
        assert not re.search(r"null|undefined|NaN", page.text(section)), page.text(section)

    shot = tmp_path / "dashboard.png"
    chromium(
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        "--window-size=1280,900",
        dashboard_url,
    )
    assert shot.stat().st_size > 10_000
    print(
        f"page: {dashboard_url} (controller: {controller_url(paused_canary)}); screenshot: {shot}"
    )


@pytest.mark.slow
def test_charts_draw_each_release_its_threshold_and_the_decisions(
    chromium_installed: None, paused_canary: Workspace, dashboard_url: str, tmp_path: Path
) -> None:
    with paused_canary.load():  # traffic through the router, to both releases
        series = paused_canary.wait_for(
            lambda: (
                (got := api_series(paused_canary))["releases"].get("v2")
                and any(got["releases"]["v2"]["rate"])
                and got
            ),
            timeout=30,
            what="the canary's traffic in /api/series",
        )
        dom = chromium(
            tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", dashboard_url
        )
        shot = tmp_path / "charts.png"
        chromium(
            tmp_path / "profile",
            "--virtual-time-budget=5000",
            f"--screenshot={shot}",
            "--window-size=1280,1400",
            dashboard_url,
        )
    assert series["stable"] == "v1" and series["canary"] == "v2"
    assert {"chart": "errors", "value": 0.05} in [
        {"chart": t["chart"], "value": t["value"]} for t in series["thresholds"]
    ]
    page = Page(dom)
    assert [e.get("data-chart") for e in page.with_class("chart-box")] == ["rate", "errors", "p99"]
    drawn = {(e.get("data-release"), e.get("stroke")) for e in page.with_class("series")}
    assert {release for release, _ in drawn} == {"v1", "v2"}, drawn
    assert len({color for _, color in drawn}) == 2  # one colour per release
    (threshold,) = page.with_class("threshold")  # only the error-rate metric has one
    assert threshold.get("data-value") == "0.05"
    kinds = {e.get("data-kind") for e in page.with_class("decision")}
    assert {"deploy", "pause"} <= kinds, kinds
    assert shot.stat().st_size > 10_000
    print(f"charts: {shot}")


def api_series(ws: Workspace) -> dict[str, Any]:
    token = (ws.root / ".zerodown" / "token").read_text().strip()
    answer = httpx.get(
        controller_url(ws) + "/api/series", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    answer.raise_for_status()
    return dict(answer.json())


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
    messages ending in NUL on fds 3 and 4), so no websocket library is needed."""

    FLAGS = (
        "--remote-debugging-pipe",
        "--window-size=1280,900",
        # The page under test runs in a target of its own; on a busy machine Chromium would
        # treat it as a background tab and hold its timers (the refresh loop) back.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
    )

    def __init__(self, profile: Path, log: Path) -> None:
        if not os.path.exists(CHROMIUM):
            require(f"{CHROMIUM} is missing (Debian packages chromium and chromium-driver)")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        self._log = log.open("wb")
        # bash puts our pipe ends on fds 3 and 4 without a preexec_fn (unsafe with threads)
        redirect = f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome} {to_chrome}<&- {from_chrome}>&-'
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                redirect,
                CHROMIUM,
                *CHROMIUM_FLAGS,
                *self.FLAGS,
                f"--user-data-dir={profile}",
            ],
            pass_fds=(to_chrome, from_chrome),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next = 0
        self.session = ""

    def call(self, method: str, timeout: float = 15, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next:
                    assert "error" not in answer, (method, answer["error"])
                    return dict(answer.get("result", {}))
            left = deadline - time.monotonic()
            assert left > 0, f"Chromium did not answer {method} within {timeout}s"
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "Chromium closed the DevTools pipe"
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_js(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        seen = self.js(
            "JSON.stringify({state: document.body?.dataset.state,"
            " conn: document.getElementById('conn')?.textContent,"
            " dialog: document.getElementById('token-dialog')?.open, debug: window.__debug})"
        )
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or expression}; the page: {seen}"
        )

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("Browser.close", timeout=5)
            self.proc.wait(timeout=10)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            os.close(self._in)
            os.close(self._out)
            self._log.close()


def press(browser: DevTools, action: str, *, token: str | None = None) -> str:
    """Click a button, answer the token dialog if it opens, return the message shown."""
    browser.js("document.getElementById('action-result').textContent = ''")
    browser.wait_js(
        f"!document.querySelector('[data-action={action}]').disabled", what=f"{action} enabled"
    )
    browser.js(f"document.querySelector('[data-action={action}]').click()")
    if token is not None:
        browser.wait_js("document.getElementById('token-dialog').open", what="the token dialog")
        browser.js(f"document.getElementById('token-input').value = {json.dumps(token)}")
        browser.js("document.querySelector('#token-form button[value=ok]').click()")
    return answer(browser, action)


def answer(browser: DevTools, action: str) -> str:
    """The message under the buttons once the command has its answer."""
    shown = "document.getElementById('action-result').textContent"
    return str(browser.wait_js(f"!{shown}.endsWith('…') && {shown}", what=f"{action}'s answer"))


@pytest.mark.slow
def test_buttons_send_commands_with_the_token(
    chromium_installed: None, paused_canary: Workspace, dashboard_url: str, tmp_path: Path
) -> None:
    token = (paused_canary.root / ".zerodown" / "token").read_text().strip()
    browser = DevTools(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(dashboard_url)
        browser.wait_js("document.body?.dataset.state === 'live'", what="the first refresh")
        # the gate's reason carries an <img onerror=…>: it must stay text, and never run
        assert HOSTILE in browser.js("document.getElementById('checks').textContent")
        assert browser.js("document.getElementById('pwned') === null")
        assert browser.js("document.title") == "shop · zerodown"

        # a wrong token: the API's refusal is shown, and the token is forgotten
        shown = press(browser, "promote", token="not-the-token")
        assert shown.startswith("promote failed:") and ".zerodown/token" in shown, shown
        assert browser.js("sessionStorage.getItem('zerodown.token')") is None
        assert paused_canary.status()["status"]["rollout"]["step"] == 2

        # the right one: the command goes through and the page follows the rollout
        assert press(browser, "promote", token=token) == "promote: done"
        assert browser.js("sessionStorage.getItem('zerodown.token')") == token
        assert token not in browser.js("location.href")
        paused_canary.wait_for(
            lambda: paused_canary.status()["status"]["rollout"]["step"] > 2,
            what="the promote to move the canary on",
        )
        browser.wait_js(
            "!document.getElementById('steps').textContent.includes('paused here')",
            what="the page to leave the pause",
        )

        # (a rollback during a rollout aborts it: wait for this one to finish first)
        paused_canary.wait_for(
            lambda: (
                paused_canary.status()["status"]["rollout"]["phase"]
                not in ("progressing", "paused")
            ),
            what="the rollout to finish",
        )
        browser.wait_js(
            "!/progressing|paused/.test(document.getElementById('rollout').textContent)",
            what="the page to see the rollout finish",
        )
        finished = browser.js("document.getElementById('rollout').textContent")
        assert not re.search(r"null|undefined|NaN", finished), finished
        # the token is kept for the tab: the next command asks for nothing, its error is shown
        browser.js("document.getElementById('action-result').textContent = ''")
        browser.js("document.querySelector('[data-action=rollback]').click()")
        browser.wait_js("document.getElementById('rollback-dialog').open", what="rollback dialog")
        browser.js("document.getElementById('rollback-input').value = '99'")
        browser.js("document.querySelector('#rollback-form button[value=ok]').click()")
        shown = answer(browser, "rollback")
        assert shown == "rollback failed: revision 99 does not exist; see `zerodown history`"
        assert not browser.js("document.getElementById('token-dialog').open")

        # Escape on the next rollback dialog is a no, even after an earlier "Roll back"
        revisions = len(paused_canary.zd("history", "--json").stdout.split('"revision"'))
        browser.js("document.getElementById('action-result').textContent = ''")
        browser.js("document.querySelector('[data-action=rollback]').click()")
        browser.wait_js("document.getElementById('rollback-dialog').open", what="rollback dialog")
        for kind in ("rawKeyDown", "keyUp"):
            browser.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Escape",
                code="Escape",
                windowsVirtualKeyCode=27,
            )
        browser.wait_js("!document.getElementById('rollback-dialog').open", what="Escape")
        time.sleep(0.5)
        assert browser.js("document.getElementById('action-result').textContent") == ""
        assert len(paused_canary.zd("history", "--json").stdout.split('"revision"')) == revisions
        events = browser.wait_js(
            "document.getElementById('events').textContent.includes('dashboard') &&"
            " document.getElementById('events').textContent",
            what="the decision log to name the dashboard",
        )
        assert "promote" in events.lower(), events

        # the controller dies: the page says so and keeps what it last saw
        os.kill(paused_canary.controller_pid(), signal.SIGKILL)
        browser.wait_js("document.body.dataset.state === 'error'", what="the page to notice")
        assert "unreachable" in browser.js("document.getElementById('conn').textContent")
        assert browser.js("document.getElementById('service').textContent") == "shop"
    finally:
        browser.close()


@pytest.fixture
def read_token_controller(
    chromium_installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A controller whose spec sets api.read_token (its engine idle: the page is the subject)."""
    monkeypatch.setenv("ZD_E2E_READ_TOKEN", "read-secret")
    spec = base_spec(free_port(), api={"read_token": "${ZD_E2E_READ_TOKEN}"})
    (tmp_path / "zerodown.yaml").write_text(yaml.safe_dump(spec))
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    controller = Controller(paths, load_spec(paths.spec))
    try:
        with serve_asgi(make_app(controller, paths.token())) as url:
            yield url + "/"
    finally:
        asyncio.run(controller.router.aclose())
        controller.flags.close()
        controller.store.close()


def answer_token_dialog(browser: DevTools, token: str | None) -> None:
    """Type `token` and confirm, or cancel when None."""
    browser.wait_js("document.getElementById('token-dialog').open", what="the token dialog")
    button = "cancel" if token is None else "ok"
    if token is not None:
        browser.js(f"document.getElementById('token-input').value = {json.dumps(token)}")
    browser.js(f"document.querySelector('#token-form button[value={button}]').click()")
    browser.wait_js("!document.getElementById('token-dialog').open", what="the dialog to close")


@pytest.mark.slow
def test_the_page_asks_for_the_read_token(read_token_controller: str, tmp_path: Path) -> None:
    browser = DevTools(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(read_token_controller)
        browser.wait_js("document.body?.dataset.state === 'locked'", what="the page to be locked")
        assert browser.js("document.getElementById('token-title').textContent") == "Read token"
        # cancelled: the page stays locked and does not ask again by itself
        answer_token_dialog(browser, None)
        assert browser.js("!document.getElementById('read-token-button').hidden")
        assert "needs a read token" in browser.js("document.getElementById('conn').textContent")
        # the header button asks again; a wrong token is refused, forgotten, and asked for again
        browser.js("document.getElementById('read-token-button').click()")
        answer_token_dialog(browser, "not-the-token")
        browser.wait_js("document.getElementById('token-dialog').open", what="a second ask")
        assert browser.js("sessionStorage.getItem('zerodown.read-token')") is None
        answer_token_dialog(browser, "read-secret")
        browser.wait_js("document.body.dataset.state === 'live'", what="the page to go live")
        assert browser.js("document.getElementById('service').textContent") == "shop"
        assert browser.js("document.getElementById('read-token-button').hidden")
        assert browser.js("sessionStorage.getItem('zerodown.read-token')") == "read-secret"
        assert browser.js("sessionStorage.getItem('zerodown.token')") is None
    finally:
        browser.close()
