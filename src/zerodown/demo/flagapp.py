"""A small app behind a feature flag, for the guarded-rollout proof.

    python flagapp.py PORT VERSION

Environment:
    FLAGAPP_FLAG       the flag the checkout path asks (default new-checkout)
    FLAGAPP_FAIL_RATE  share (0 to 1) of requests that the flag's `on` path answers with a 500
                       (default 0): the regression a guard must catch
    FLAGAPP_FAIL_FILE  if set, the `on` path fails only while this file exists (a regression
                       that starts, and ends, while the app runs)
    FLAGS_URL          the flag service: `{controller}` (default) is the running zerodown
                       controller (read from $ZERODOWN_STATE_DIR/controller.json at start);
                       or a full http:// URL; empty: no service, only FLAGS_BOOTSTRAP
    FLAGS_TOKEN        read token of the flag service, if it needs one
    FLAGS_BOOTSTRAP    a definitions file (ours, or Unleash's JSON) to start from
    FLAGS_MODE         stream (default) or poll

Routes: GET /checkout (the flag decides: `on` may fail, `off` never does; the flag middleware
names the variant in `X-Zerodown-Flags` so the router counts each variant), GET /healthz,
GET /ready (503 until the flag definitions are loaded). Users come from `X-User-Id`.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from zerodown.demo.authapp import controller_url
from zerodown.flags.client import FlagClient
from zerodown.flags.middleware import FlagsASGIMiddleware


def flags_url(env: Mapping[str, str]) -> str | None:
    url = env.get("FLAGS_URL", "{controller}")
    if "{controller}" in url:
        url = url.replace("{controller}", controller_url(env))
    return url or None


def fail_rate(env: Mapping[str, str]) -> float:
    raw = env.get("FLAGAPP_FAIL_RATE", "0")
    try:
        rate = float(raw)
    except ValueError:
        raise SystemExit(f"FLAGAPP_FAIL_RATE={raw!r}: expected a share from 0 to 1") from None
    if not 0 <= rate <= 1:
        raise SystemExit(f"FLAGAPP_FAIL_RATE={raw!r}: expected a share from 0 to 1")
    return rate


def make_client(env: Mapping[str, str]) -> FlagClient:
    mode = env.get("FLAGS_MODE", "stream")
    if mode not in ("stream", "poll"):
        raise SystemExit(f"FLAGS_MODE={mode!r}: use stream or poll")
    return FlagClient(
        flags_url(env),
        token=env.get("FLAGS_TOKEN") or None,
        bootstrap=env.get("FLAGS_BOOTSTRAP") or None,
        mode=mode,  # type: ignore[arg-type]
        poll_interval=1.0,
    )


def make_app(version: str, flags: FlagClient, env: Mapping[str, str] = os.environ) -> Any:
    key = env.get("FLAGAPP_FLAG", "new-checkout")
    rate = fail_rate(env)
    fail_file = env.get("FLAGAPP_FAIL_FILE") or None
    has_source = bool(env.get("FLAGS_BOOTSTRAP")) or flags_url(env) is None

    async def checkout(request: Request) -> JSONResponse:
        on = flags.is_enabled(key)  # the middleware's context: X-User-Id
        failing = on and rate and (fail_file is None or os.path.exists(fail_file))
        if failing and random.random() < rate:
            return JSONResponse({"error": "new checkout broke", "version": version}, 500)
        return JSONResponse({"checkout": "new" if on else "old", "version": version})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def ready(request: Request) -> PlainTextResponse:
        if has_source or flags.wait_until_ready(0):
            return PlainTextResponse("ready")
        return PlainTextResponse("flag definitions not loaded yet", 503)

    app = Starlette(
        routes=[
            Route("/checkout", checkout),
            Route("/healthz", healthz),
            Route("/ready", ready),
        ]
    )
    return FlagsASGIMiddleware(app)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: python flagapp.py PORT VERSION", file=sys.stderr)
        return 2
    import uvicorn

    flags = make_client(os.environ)
    try:
        uvicorn.run(
            make_app(argv[2], flags),
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(argv[1]),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=30,
        )
    finally:
        flags.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
