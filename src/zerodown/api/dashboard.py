"""The web dashboard: static files in `web/`, served by the controller at `/` and `/static/…`.

The page reads the same JSON API as the CLI (`/api/status`, `/api/history`) and sends commands with
the token the user types in, so serving it adds no new way to change state.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB = Path(__file__).resolve().parent / "web"

# Everything the page needs comes from the controller itself; the policy makes that a rule the
# browser enforces (no CDN, no inline script), and keeps the page out of other sites' frames.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # a controller upgrade ships new files; make the browser ask again instead of guessing
    "Cache-Control": "no-cache",
}


class _WithHeaders:
    """Adds HEADERS to every response of the wrapped static-files app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard page at `/` and its files at `/static/…`."""
    if not (WEB / "index.html").is_file():
        raise RuntimeError(f"the dashboard files are missing from {WEB}; reinstall zerodown")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html", headers=HEADERS)

    app.mount("/static", _WithHeaders(StaticFiles(directory=WEB)), name="dashboard-static")
