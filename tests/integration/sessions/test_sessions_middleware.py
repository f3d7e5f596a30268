"""The middlewares in real apps on real servers: Starlette and FastAPI on uvicorn, plain WSGI and
Flask on wsgiref. Two servers sharing one store play the old and the new release."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from support.services import require
from zerodown.sessions.asgi import SessionMiddleware
from zerodown.sessions.store import RedisSessionStore, SessionStore, SQLiteSessionStore
from zerodown.sessions.wsgi import ENVIRON_KEY, WSGISessionMiddleware

OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"

Serve = Callable[[Any], AbstractContextManager[str]]  # the asgi_server / wsgi_server fixtures


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    s: SessionStore
    if request.param == "sqlite":
        s = SQLiteSessionStore(tmp_path / "sessions.db")
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisSessionStore(url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        yield s
    finally:
        s.close()


def starlette_app(store: SessionStore, secrets: list[str], version: str) -> Starlette:
    async def login(request: StarletteRequest) -> JSONResponse:
        request.session["user"] = request.query_params["user"]
        request.session.rotate_id()
        return JSONResponse({"ok": True})

    async def me(request: StarletteRequest) -> JSONResponse:
        user = request.session.get("user")
        if user is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        request.session["hits"] = request.session.get("hits", 0) + 1
        return JSONResponse({"user": user, "version": version, "hits": request.session["hits"]})

    async def logout(request: StarletteRequest) -> JSONResponse:
        request.session.clear()
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/me", me),
            Route("/logout", logout, methods=["POST"]),
        ]
    )
    app.add_middleware(SessionMiddleware, store=store, secrets=secrets)
    return app


def fastapi_app(store: SessionStore, secrets: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    async def login(request: Request, user: str) -> dict[str, Any]:
        request.session["user"] = user
        return {"ok": True}

    @app.get("/me")
    async def me(request: Request) -> Any:
        user = request.session.get("user")
        if user is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return {"user": user}

    app.add_middleware(SessionMiddleware, store=store, secrets=secrets)
    return app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    if path == "/login":
        session["user"] = environ["QUERY_STRING"].removeprefix("user=")
        status, body = "200 OK", {"ok": True}
    elif "user" in session:
        status, body = "200 OK", {"user": session["user"]}
    else:
        status, body = "401 Unauthorized", {"error": "not logged in"}
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.mark.slow  # over half a second: the full suite runs it
def test_session_made_by_old_release_is_served_by_new_release(
    store: SessionStore, asgi_server: Serve
) -> None:
    old_app = starlette_app(store, [OLD], "v1")
    new_app = starlette_app(store, [NEW, OLD], "v2")  # the new release also rotates the secret
    with asgi_server(old_app) as old, asgi_server(new_app) as new, httpx.Client() as client:
        assert client.get(f"{old}/me").status_code == 401
        assert client.post(f"{old}/login", params={"user": "ann"}).status_code == 200
        assert client.get(f"{old}/me").json() == {"user": "ann", "version": "v1", "hits": 1}
        r = client.get(f"{new}/me")
        assert r.json() == {"user": "ann", "version": "v2", "hits": 2}
        assert "HttpOnly" in r.headers["set-cookie"]
        # Re-signed by the new secret: a later release that drops the old secret keeps the user.
        newest_only = starlette_app(store, [NEW], "v3")
        with asgi_server(newest_only) as v3:
            assert client.get(f"{v3}/me").json()["hits"] == 3
        assert client.post(f"{new}/logout").status_code == 200
        assert client.get(f"{old}/me").status_code == 401


def test_cookie_from_an_unlisted_secret_is_no_session(
    store: SessionStore, asgi_server: Serve
) -> None:
    with (
        asgi_server(starlette_app(store, [OLD], "v1")) as old,
        asgi_server(starlette_app(store, [NEW], "v2")) as new,
        httpx.Client() as client,
    ):
        client.post(f"{old}/login", params={"user": "ann"})
        assert client.get(f"{new}/me").status_code == 401


def test_fastapi_and_plain_wsgi_share_sessions(
    store: SessionStore, asgi_server: Serve, wsgi_server: Serve
) -> None:
    """An ASGI release and a WSGI release of the same service read each other's sessions."""
    wsgi = WSGISessionMiddleware(wsgi_app, store=store, secrets=[NEW])
    with (
        asgi_server(fastapi_app(store, [NEW])) as fast,
        wsgi_server(wsgi) as plain,
        httpx.Client() as client,
    ):
        assert client.get(f"{plain}/me").status_code == 401
        assert client.post(f"{fast}/login", params={"user": "bob"}).status_code == 200
        assert client.get(f"{plain}/me").json() == {"user": "bob"}
        client.cookies.clear()
        client.get(f"{plain}/login", params={"user": "cat"})
        assert client.get(f"{fast}/me").json() == {"user": "cat"}


def test_flask_session_interface(
    store: SessionStore, wsgi_server: Serve, asgi_server: Serve
) -> None:
    try:
        import flask
    except ImportError:
        require("Flask is not installed (pip install flask) for the Flask session test")
    from zerodown.sessions.flask import ZerodownSessionInterface

    app = flask.Flask("zerodown-test")
    app.session_interface = ZerodownSessionInterface(store=store, secrets=[NEW, OLD])

    @app.post("/login")
    def login() -> dict[str, Any]:
        flask.session["user"] = flask.request.args["user"]
        return {"ok": True}

    @app.get("/me")
    def me() -> Any:
        if "user" not in flask.session:
            return {"error": "not logged in"}, 401
        return {"user": flask.session["user"]}

    with (
        wsgi_server(app) as flask_url,
        asgi_server(starlette_app(store, [OLD], "v1")) as old,
        httpx.Client() as client,
    ):
        assert client.get(f"{flask_url}/me").status_code == 401
        client.post(f"{old}/login", params={"user": "dan"})  # signed by the old secret
        assert client.get(f"{flask_url}/me").json() == {"user": "dan"}
        client.cookies.clear()
        client.post(f"{flask_url}/login", params={"user": "eve"})
        assert client.get(f"{flask_url}/me").json() == {"user": "eve"}
