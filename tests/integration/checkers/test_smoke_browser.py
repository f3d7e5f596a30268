"""Browser smoke checks in the real Chromium (Debian's, through Playwright): what passes, and
what each failure says, with the screenshot it keeps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from support.services import free_port, require
from support.site import Html, Site
from zerodown.checkers.browser import chromium
from zerodown.checkers.smoke import run_smoke
from zerodown.spec.gates import SmokeSpec

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # a browser start is seconds

# The text is written by a script, as a single-page app would: a request check never sees it.
PAGE = Html(
    "<!doctype html><title>shop</title><main id=m>loading</main>"
    "<script>document.getElementById('m').textContent = 'Pay now';</script>"
)
BROKEN = Html(
    "<!doctype html><title>shop</title><main>Pay now</main><script>undefinedFunction()</script>"
)


@pytest.fixture(autouse=True)
def browser_installed() -> None:
    if importlib.util.find_spec("playwright") is None:
        require("playwright is not installed (pip install 'zerodown[browser]')")
    if chromium() is None:
        require("Chromium is missing (Debian package chromium)")


def spec(**browser: object) -> SmokeSpec:
    return SmokeSpec.model_validate(
        {"timeout": "60s", "checks": [{"name": "page", "browser": {"path": "/", **browser}}]}
    )


async def test_a_page_whose_script_shows_the_text_passes(site: Site, tmp_path: Path) -> None:
    site.route("GET", "/", (200, PAGE))
    result = await run_smoke(spec(text="Pay now"), site.url, screenshots=tmp_path)
    assert result.passed, result.reason
    (check,) = result.checks
    assert check.reason == "/: 200, page checked in Chromium" and check.status == 200
    assert list(tmp_path.iterdir()) == []  # screenshots only of failures


async def test_failures_say_why_and_keep_a_screenshot(site: Site, tmp_path: Path) -> None:
    site.route("GET", "/", (200, PAGE))
    site.route("GET", "/broken", (200, BROKEN))
    site.route("GET", "/down", (503, Html("<p>maintenance</p>")))
    cases = [
        ({"text": "Checkout"}, "/: the page does not show 'Checkout'; it shows 'Pay now'"),
        ({"path": "/broken"}, "/broken: console error: uncaught ReferenceError:"),
        ({"path": "/down"}, "/down: status 503, expected 200"),
    ]
    for fields, says in cases:
        shots = tmp_path / str(len(list(tmp_path.iterdir())))
        result = await run_smoke(spec(**fields), site.url, screenshots=shots)
        (check,) = result.checks
        assert not result.passed and check.reason.startswith(says), check.reason
        (shot,) = shots.iterdir()
        assert shot.suffix == ".png" and shot.read_bytes().startswith(b"\x89PNG")
        assert f"; screenshot: {shot}" in check.reason
    # errors the team accepts
    result = await run_smoke(spec(path="/broken", console_errors=True), site.url)
    assert result.passed, result.reason


async def test_nothing_listening_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    result = await run_smoke(spec(), f"http://127.0.0.1:{free_port()}", screenshots=tmp_path)
    (check,) = result.checks
    assert not check.passed and "ERR_CONNECTION_REFUSED" in check.reason, check.reason
