"""The controller's HTTP API. Reads are open on loopback; anything that changes state needs
`Authorization: Bearer <.zerodown/token>`."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from zerodown.api.controller import Controller, history, state_summary
from zerodown.api.dashboard import mount_dashboard
from zerodown.core.errors import SpecError, StateError
from zerodown.flags.api import make_flags_router
from zerodown.keys.jwks import make_jwks_router


class DeployRequest(BaseModel):
    version: str
    spec: dict[str, Any]
    strategy: str | None = None
    who: str = "cli"


class RollbackRequest(BaseModel):
    to: int | None = None
    who: str = "cli"
    force: bool = False


class CommandRequest(BaseModel):
    who: str = "cli"
    full: bool = False


def make_app(controller: Controller, token: str) -> FastAPI:
    app = FastAPI(title="zerodown controller", docs_url=None, redoc_url=None)
    app.include_router(make_flags_router(controller.flags, admin_token=token))
    app.include_router(make_jwks_router(controller.paths.state / "keys"))

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {token}"
        if authorization is None or not secrets.compare_digest(authorization, expected):
            raise HTTPException(
                401, "this needs the token in .zerodown/token (Authorization: Bearer …)"
            )

    Auth = Depends(authorized)

    @app.exception_handler(StateError)
    async def _state_error(_: Request, exc: StateError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ValidationError)
    async def _validation_error(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return state_summary(controller)

    @app.get("/api/history")
    def get_history() -> list[dict[str, Any]]:
        return history(controller)

    @app.get("/api/events")
    def events(after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        return [
            e.to_json()
            for e in controller.store.events(controller.service, after=after, limit=limit)
        ]

    @app.post("/api/deploy", dependencies=[Auth])
    async def deploy(body: DeployRequest) -> dict[str, Any]:
        return controller.deploy(
            version=body.version, spec=body.spec, strategy=body.strategy, who=body.who
        )

    @app.post("/api/rollback", dependencies=[Auth])
    async def rollback(body: RollbackRequest) -> dict[str, Any]:
        return controller.rollback(to=body.to, who=body.who, force=body.force)

    @app.post("/api/promote", dependencies=[Auth])
    async def promote(body: CommandRequest) -> dict[str, Any]:
        return controller.promote(full=body.full, who=body.who)

    @app.post("/api/abort", dependencies=[Auth])
    async def abort(body: CommandRequest) -> dict[str, Any]:
        return controller.abort(who=body.who)

    @app.post("/api/pause", dependencies=[Auth])
    async def pause(body: CommandRequest) -> dict[str, Any]:
        return controller.pause(who=body.who)

    @app.post("/api/resume", dependencies=[Auth])
    async def resume(body: CommandRequest) -> dict[str, Any]:
        return controller.resume(who=body.who)

    @app.post("/api/retry", dependencies=[Auth])
    async def retry(body: CommandRequest) -> dict[str, Any]:
        return controller.retry(who=body.who)

    @app.post("/api/down", dependencies=[Auth])
    async def down(body: CommandRequest) -> dict[str, Any]:
        return controller.down(who=body.who)

    mount_dashboard(app)
    return app
