"""The controller's HTTP API.

- Anything that changes state needs `Authorization: Bearer <.zerodown/token>` (the admin token).
- Reads (status, history, events, flag definitions) are open on loopback unless the spec sets
  `api.read_token`; then they need it or the admin token. The dashboard page and its files,
  `/openapi.json`, OFREP evaluation and `/.well-known/jwks.json` stay public by design: the page
  holds no data (it asks for the token), and the others are meant for every app and verifier.
- Every parameter is bounded: bad input is a 4xx naming the field, never a 5xx.
- A body over MAX_BODY is refused (413) from its Content-Length, or as soon as the bytes read
  pass it: never buffered first.
- An unexpected exception is logged and answered with a JSON 500, and is not raised on to the
  server, which would close the connection under the client's next request.
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zerodown.api.controller import Controller, history, state_summary
from zerodown.api.dashboard import mount_dashboard
from zerodown.api.plan import plan_of
from zerodown.api.series import make_series_router
from zerodown.core.errors import SpecError, StateError, StoreUnavailable
from zerodown.flags.api import ADMIN_TOKEN, READ_TOKEN, make_flags_router, require_token
from zerodown.keys.jwks import make_jwks_router
from zerodown.spec.types import Version

log = logging.getLogger("zerodown.api")

# A deploy carries the whole spec (a few KB) and a flag import all the flags: 1 MiB leaves room
# for both many times over, and bounds what one request can make the controller hold.
MAX_BODY = 1 << 20
MAX_SPEC_DEPTH = 32  # nesting of a deploy's spec; a real spec goes about 6 deep
MAX_WHO = 200
SQLITE_MAX_INT = 2**63 - 1


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def _shallow(spec: dict[str, Any]) -> dict[str, Any]:
    if _depth(spec) > MAX_SPEC_DEPTH:
        raise ValueError(f"the spec nests deeper than {MAX_SPEC_DEPTH} levels")
    return spec


Who = Annotated[str, Field(min_length=1, max_length=MAX_WHO)]


class DeployRequest(BaseModel):
    version: Version
    spec: Annotated[dict[str, Any], AfterValidator(_shallow)]
    strategy: Literal["rolling", "blue-green", "blue_green", "canary"] | None = None
    who: Who = "cli"


class RollbackRequest(BaseModel):
    to: int | None = Field(None, ge=1, le=SQLITE_MAX_INT)
    who: Who = "cli"
    force: bool = False


class CommandRequest(BaseModel):
    who: Who = "cli"
    full: bool = False


def read_token_of(controller: Controller) -> str | None:
    """The spec's `api.read_token` with `${VAR}` read from the environment; SpecError when it
    names a variable that is not set or comes out empty (serving reads open instead would be
    the opposite of what the spec asks)."""
    raw = controller.spec.api.read_token
    if raw is None:
        return None

    def problem(message: str) -> SpecError:
        return SpecError(message, file=str(controller.paths.spec), field="api.read_token")

    try:
        token = string.Template(raw).substitute(os.environ).strip()
    except KeyError as exc:
        raise problem(f"${{{exc.args[0]}}} is not set in the environment") from None
    except ValueError as exc:
        raise problem(f"{exc}; write ${{VAR}} to read VAR from the environment") from None
    if not token:
        raise problem("is empty; set a token, or remove it to leave reads open")
    return token


def _error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


TOO_LARGE = f"the request body is larger than {MAX_BODY} bytes (1 MiB)"
CLOSE = {"Connection": "close"}  # the rest of a refused body is not read: skip it by closing


class _Guard:
    """The body limit, and the last word on unexpected exceptions. It sits just inside
    Starlette's own error middleware, which answers 500 but then raises on to the server, and
    uvicorn closes a connection whose request raised (the reset seen by the next request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > MAX_BODY:
            await _error(413, TOO_LARGE, CLOSE)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:  # a chunked body, whose size is known only as it comes
                raise HTTPException(413, TOO_LARGE, headers=CLOSE)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not started:
                detail = f"internal error ({type(exc).__name__}); the controller's log has details"
                await _error(500, detail)(scope, receive, send)


def make_app(controller: Controller, token: str) -> FastAPI:
    """The API for `controller`; `token` is the admin token. Raises SpecError when the spec's
    read token cannot be read (see read_token_of), so the controller refuses to start."""
    read_token = read_token_of(controller)
    app = FastAPI(title="zerodown controller", docs_url=None, redoc_url=None)
    app.add_middleware(_Guard)
    app.include_router(
        make_flags_router(controller.flags, admin_token=token, read_token=read_token)
    )
    app.include_router(make_jwks_router(controller.paths.state / "keys"))

    admin = [require_token(token, what="this", which=ADMIN_TOKEN)]
    read = (
        [require_token(read_token, token, what="reading the controller's state", which=READ_TOKEN)]
        if read_token
        else []
    )
    app.include_router(make_series_router(controller, read))  # the dashboard's charts

    @app.exception_handler(StateError)
    async def _state_error(_: Request, exc: StateError) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        # The store is locked or failing: the state cannot be read now, and it may be soon.
        return _error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(ValidationError)
    async def _validation_error(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad input back: up to MAX_BODY of it, and a deeply
        # nested one overflows the encoder's recursion. Where and what is enough to fix it.
        errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/api/status", dependencies=read)
    def status() -> dict[str, Any]:
        return state_summary(controller)

    @app.get("/api/history", dependencies=read)
    def get_history() -> list[dict[str, Any]]:
        return history(controller)

    @app.get("/api/plan", dependencies=read)
    def rollback_plan() -> dict[str, Any]:
        """The rollback plan of the current rollout, or of the next deploy (`zerodown plan`)."""
        return plan_of(controller)

    @app.get("/api/events", dependencies=read)
    def events(
        after: int = Query(0, ge=0, le=SQLITE_MAX_INT, description="events with a larger id"),
        limit: int = Query(200, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        return [
            e.to_json()
            for e in controller.store.events(controller.service, after=after, limit=limit)
        ]

    @app.post("/api/deploy", dependencies=admin)
    async def deploy(body: DeployRequest) -> dict[str, Any]:
        return controller.deploy(
            version=body.version, spec=body.spec, strategy=body.strategy, who=body.who
        )

    @app.post("/api/rollback", dependencies=admin)
    async def rollback(body: RollbackRequest) -> dict[str, Any]:
        return controller.rollback(to=body.to, who=body.who, force=body.force)

    @app.post("/api/promote", dependencies=admin)
    async def promote(body: CommandRequest) -> dict[str, Any]:
        return controller.promote(full=body.full, who=body.who)

    @app.post("/api/abort", dependencies=admin)
    async def abort(body: CommandRequest) -> dict[str, Any]:
        return controller.abort(who=body.who)

    @app.post("/api/pause", dependencies=admin)
    async def pause(body: CommandRequest) -> dict[str, Any]:
        return controller.pause(who=body.who)

    @app.post("/api/resume", dependencies=admin)
    async def resume(body: CommandRequest) -> dict[str, Any]:
        return controller.resume(who=body.who)

    @app.post("/api/retry", dependencies=admin)
    async def retry(body: CommandRequest) -> dict[str, Any]:
        return controller.retry(who=body.who)

    @app.post("/api/down", dependencies=admin)
    async def down(body: CommandRequest) -> dict[str, Any]:
        return controller.down(who=body.who)

    mount_dashboard(app)
    return app
