"""A smoke check in a real browser: Chromium, driven through Playwright.

A request check sees the HTML; a user sees what the page's scripts make of it. This one loads the
page as a browser does (scripts, styles, the calls they make), then checks the document's status,
the text the page shows, and that nothing was written to the browser's console as an error
(uncaught exceptions included). When it fails, a screenshot of the page is kept and its path is
in the reason.

The browser is the system's Chromium where there is one (`$ZERODOWN_CHROMIUM`, then `chromium`,
`chromium-browser`, `google-chrome` on PATH), else one that `playwright install chromium`
downloaded. Playwright is an optional dependency: `pip install 'zerodown[browser]'`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

from zerodown.spec.gates import BrowserCheck

INSTALL = "browser smoke checks need Playwright: pip install 'zerodown[browser]'"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    """The system's Chromium, if any (None: Playwright's own download)."""
    named = os.environ.get("ZERODOWN_CHROMIUM")
    if named:
        return named
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


async def check_page(
    name: str, browser: BrowserCheck, base_url: str, *, budget: float, screenshots: Path | None
) -> tuple[bool, str, int | None]:
    """Load the page; (passed, reason, the document's status)."""
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright
    except ImportError:
        return False, INSTALL, None
    url = base_url.rstrip("/") + browser.path
    errors: list[str] = []
    deadline = time.monotonic() + budget
    try:
        async with async_playwright() as playwright:
            launched = await playwright.chromium.launch(
                executable_path=chromium(),
                # root has no user namespace sandbox here; the page is the team's own
                args=["--no-sandbox"] if os.geteuid() == 0 else [],
                timeout=budget * 1000,
            )
            try:
                page = await launched.new_page()
                page.on("console", lambda m: _console(m, errors))
                page.on("pageerror", lambda e: errors.append(f"uncaught {e.name}: {e.message}"))
                left = max(0.1, deadline - time.monotonic())
                response = await page.goto(url, wait_until=browser.wait_until, timeout=left * 1000)
                status = response.status if response is not None else None
                problem = await _problem(browser, page, status, errors)
                if problem:
                    shot = await _screenshot(page, screenshots, name)
                    return False, f"{browser.path}: {problem}{shot}", status
                return True, f"{browser.path}: {status}, page checked in Chromium", status
            finally:
                await launched.close()
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Executable doesn't exist" in str(exc):
            first = "no Chromium: install it (Debian: apt-get install chromium) or set $ZERODOWN_CHROMIUM"
        return False, f"{browser.path}: {first}", None


def _console(message: Any, errors: list[str]) -> None:
    # The favicon the browser asks for by itself is not the page's; its 404 is noise.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        errors.append(message.text)


async def _problem(browser: BrowserCheck, page: Any, status: int | None, errors: list[str]) -> str:
    if status != browser.status:
        return f"status {status}, expected {browser.status}"
    if browser.text is not None:
        shown = await page.inner_text("body")
        if browser.text not in shown:
            return f"the page does not show {browser.text!r}; it shows {_clip(shown)!r}"
    if errors and not browser.console_errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"console error: {_clip(errors[0])}{more}"
    return ""


async def _screenshot(page: Any, directory: Path | None, name: str) -> str:
    if directory is None:
        return ""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"{name}-{stamp}.png"
    await page.screenshot(path=str(path), full_page=True)
    return f"; screenshot: {path}"


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
