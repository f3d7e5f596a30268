"""Deploy-time compat checks against the demo app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from support.services import free_port
from zerodown.demo.authapp import make_app
from zerodown.keys.jwks import make_jwks_router
from zerodown.keys.model import Policy
from zerodown.keys.storage import KeyringDir
from zerodown.sessions.compat import (
    CompatSpec,
    check_session_compat,
    check_token_compat,
    compat_token,
    run_compat,
)

Serve = Callable[[Any], AbstractContextManager[str]]
OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"


@pytest.fixture
def keys(tmp_path: Path) -> KeyringDir:
    d = KeyringDir(tmp_path / "keys")
    d.init(alg="ES256", policy=Policy(), now=time.time())
    return d


@pytest.fixture
def jwks_url(keys: KeyringDir, asgi_server: Serve) -> Iterator[str]:
    app = FastAPI()
    app.include_router(make_jwks_router(keys.path))
    with asgi_server(app) as base:
        yield f"{base}/.well-known/jwks.json"


def env(tmp_path: Path, secrets: str) -> dict[str, str]:
    return {"SESSIONS": "sqlite", "SESSION_DB": str(tmp_path / "s.db"), "SESSION_SECRETS": secrets}


def test_session_compat_passes_when_the_new_release_reads_old_sessions(
    tmp_path: Path, asgi_server: Serve
) -> None:
    old_app = make_app("v1", env(tmp_path, OLD))
    new_app = make_app("v2", env(tmp_path, f"{NEW},{OLD}"))
    with asgi_server(old_app) as old, asgi_server(new_app) as new:
        result = asyncio.run(check_session_compat(old, new))
    assert result.ok, result.reason
    assert result.status == 200 and "accepted" in result.reason


@pytest.mark.parametrize(
    ("new_env", "reason"),
    [
        ({"SESSION_SECRETS": NEW}, "answered 401"),  # dropped the old secret too early
        ({"SESSIONS": "memory"}, "answered 401"),  # sessions not shared
    ],
)
def test_session_compat_fails_with_a_reason(
    tmp_path: Path, asgi_server: Serve, new_env: dict[str, str], reason: str
) -> None:
    old_app = make_app("v1", env(tmp_path, OLD))
    new_app = make_app("v2", {**env(tmp_path, OLD), **new_env})
    with asgi_server(old_app) as old, asgi_server(new_app) as new:
        result = asyncio.run(check_session_compat(old, new, "GET /me", 200))
    assert not result.ok
    assert reason in result.reason and "log users out" in result.reason


def test_session_compat_misconfigured_or_unreachable(tmp_path: Path, asgi_server: Serve) -> None:
    with asgi_server(make_app("v1", env(tmp_path, OLD))) as old:
        bad_login = asyncio.run(check_session_compat(old, old, login="POST /nowhere"))
        assert not bad_login.ok and "answered 404" in bad_login.reason
        wrong_expect = asyncio.run(check_session_compat(old, old, "GET /me", 204))
        assert not wrong_expect.ok and "old release itself" in wrong_expect.reason
        gone = asyncio.run(check_session_compat(old, f"http://127.0.0.1:{free_port()}"))
        assert not gone.ok and "could not reach the new release" in gone.reason


def test_token_compat(tmp_path: Path, asgi_server: Serve, keys: KeyringDir, jwks_url: str) -> None:
    good = make_app("v2", {**env(tmp_path, OLD), "JWKS_URL": jwks_url})
    stranger = KeyringDir(tmp_path / "other")
    stranger.init(alg="ES256", policy=Policy(), now=time.time())
    with asgi_server(good) as new:
        token = compat_token(keys.path, {"sub": "zerodown-compat"})
        ok = asyncio.run(check_token_compat(new, token))
        assert ok.ok and ok.status == 200, ok.reason
        forged = compat_token(stranger.path, {"sub": "x"})
        refused = asyncio.run(check_token_compat(new, forged, "GET /api/me", 200))
        assert not refused.ok and "answered 401" in refused.reason
    gone = asyncio.run(check_token_compat(f"http://127.0.0.1:{free_port()}", token))
    assert not gone.ok and "could not reach" in gone.reason


@pytest.mark.slow  # over half a second: the full suite runs it
def test_run_compat_runs_the_yaml_section(
    tmp_path: Path, asgi_server: Serve, keys: KeyringDir, jwks_url: str
) -> None:
    spec = CompatSpec.model_validate(
        {
            "session": {"request": "GET /me", "expect": {"status": 200}},
            "token": {"request": "GET /api/me", "keys": "keys"},
        }
    )
    old_app = make_app("v1", {**env(tmp_path, OLD), "JWKS_URL": jwks_url})
    new_app = make_app("v2", {**env(tmp_path, f"{NEW},{OLD}"), "JWKS_URL": jwks_url})
    with asgi_server(old_app) as old, asgi_server(new_app) as new:
        results = asyncio.run(run_compat(spec, old, new, base_dir=tmp_path))
        assert [(r.check, r.ok) for r in results] == [("session", True), ("token", True)]
        no_keys = asyncio.run(run_compat(spec, old, new, base_dir=tmp_path / "elsewhere"))
    assert no_keys[1].check == "token" and not no_keys[1].ok
    assert "keys init" in no_keys[1].reason
