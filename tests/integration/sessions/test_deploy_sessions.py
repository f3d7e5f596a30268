"""Issue 7's proof through the real CLI: logged-in users lose nothing across `zerodown deploy`.

The auth demo app (zerodown/demo/authapp.py) runs under `zerodown up`; simulated users, half
with a session cookie and half with a bearer token signed from the workspace's keyring, send
requests through the router while `zerodown deploy --wait` rolls or switches to v2, and the
signing key rotates (`zerodown keys rotate`) in the middle of the rollout. The instances verify
tokens against the controller's /.well-known/jwks.json.

- Redis sessions: 0 failed requests and 0 logouts (no 401), rolling and blue-green, with the
  `compat:` check passing before v2 gets traffic.
- Memory sessions, the baseline (no compat check, or it would refuse the deploy): the logouts
  are counted and printed. It runs one instance: with two, the router spreads a user's requests
  over both and memory sessions log users out even without a deploy.
- A release that refuses old sessions fails at the "compat" check before any user sees it.

Run with `pytest -s tests/integration/sessions/test_deploy_sessions.py` to see the figures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_kit import (
    USERS,
    Background,
    LoggedInUsers,
    Tally,
    auth_spec,
    init_keys,
    key_times,
)

import zerodown.demo.authapp as authapp
from support.services import free_port
from support.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path)
    yield ws
    ws.teardown()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix of this test's own; its sessions are deleted afterwards."""
    import redis

    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        for key in client.scan_iter(match=prefix + "*", count=500):
            client.delete(key)
    finally:
        client.close()


def strategy_for(name: str) -> dict[str, Any]:
    if name == "rolling":
        # min_ready holds each step 2 s, so the rollout outlasts the 2 s between the rotated
        # key's publication and its first signature even on a quiet machine.
        return {"rolling": {"max_surge": 1, "max_unavailable": 0, "min_ready": "2s"}}
    return {
        "blue_green": {
            "preview_listen": f"127.0.0.1:{free_port()}",
            # The switch waits 3 s after the new environment is ready: the key rotated with the
            # deploy (it signs 2 s after it is published) starts signing before it, while v1
            # still serves everyone.
            "auto_promote_after": "3s",
            "scale_down_delay": "1s",
        }
    }


def deploy_with_rotation(ws: Workspace, keys_dir: Path) -> tuple[Tally, dict[str, float]]:
    """v1 serves logged-in users; `deploy v2 --wait` and `keys rotate` start together.

    The new key is published as the rollout starts and signs 2 s later (the keyring's
    jwks_cache_ttl), while v2's instances are starting or v1 and v2 serve side by side.
    """
    ws.zd("up", "--version", "v1")
    times: dict[str, float] = {}
    with LoggedInUsers(ws.url, keys_dir, max_seconds=60) as load:
        time.sleep(1)
        times["deploy"] = time.time()
        deploy = Background(ws, "deploy", "v2", "--wait")
        try:
            rotated = Background(ws, "keys", "rotate", with_spec=False).wait()
        finally:
            code, output = deploy.wait()
        times["done"] = time.time()
        assert rotated[0] == 0, rotated[1]
        assert code == 0, output
        time.sleep(2)  # the old release's instances finish draining and stop under load
    times["end"] = time.time()
    new_key = key_times(ws)[-1]
    times["published"] = float(new_key["published_at"])
    times["activated"] = float(new_key["activates_at"])
    return load.tally, times


def figures(label: str, tally: Tally, times: dict[str, float]) -> None:
    t0 = times["deploy"]
    print(
        f"\n{label}: {tally.summary()}; new key published at +{times['published'] - t0:.1f}s, "
        f"new key signs from +{times['activated'] - t0:.1f}s, deploy done at "
        f"+{times['done'] - t0:.1f}s"
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["rolling", "blue_green"])
def test_redis_sessions_and_key_rotation_log_nobody_out(
    workspace: Workspace, redis_url: str, redis_prefix: str, strategy: str
) -> None:
    spec = auth_spec(
        workspace.port,
        sessions="redis",
        redis_url=redis_url,
        prefix=redis_prefix,
        strategy=strategy_for(strategy),
    )
    workspace.write_spec(spec)
    keys_dir = init_keys(workspace)
    tally, times = deploy_with_rotation(workspace, keys_dir)
    figures(f"{strategy}, Redis sessions, 2 instances", tally, times)

    assert [(h.status, h.error) for h in tally.failed] == []
    assert [(h.kind, h.user, h.error) for h in tally.logouts] == []
    assert tally.other() == []
    assert set(tally.versions()) == {"v1", "v2"}
    assert set(tally.versions(since=times["done"] + 0.5)) == {"v2"}
    # Tokens of both keys were accepted, and the new key started signing mid-rollout.
    assert len(tally.kids()) == 2
    assert times["deploy"] < times["published"] < times["activated"] < times["done"]
    status = workspace.status()
    assert status["status"]["stable"] == "v2"
    assert status["status"]["rollout"]["checks"]["compat"]["state"] == "passed"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["rolling", "blue_green"])
def test_memory_sessions_baseline_logs_users_out(workspace: Workspace, strategy: str) -> None:
    spec = auth_spec(
        workspace.port,
        sessions="memory",
        instances=1,
        strategy=strategy_for(strategy),
        compat=False,  # the check would refuse this deploy (see the next test's docstring)
    )
    workspace.write_spec(spec)
    keys_dir = init_keys(workspace)
    tally, times = deploy_with_rotation(workspace, keys_dir)
    figures(f"{strategy}, memory sessions (baseline), 1 instance", tally, times)

    assert [(h.status, h.error) for h in tally.failed] == []
    before = [h for h in tally.logouts if h.at < times["deploy"]]
    assert before == []  # one instance: nobody is logged out until the deploy
    # The one instance holding the sessions goes away: every session user is logged out.
    assert len(tally.users_logged_out("cookie")) == USERS
    assert tally.users_logged_out("token") == set()  # tokens carry no server-side state
    assert len(tally.kids()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("case", ["secret-without-fallback", "memory-sessions"])
def test_release_refusing_old_sessions_fails_at_compat_before_traffic(
    request: pytest.FixtureRequest, workspace: Workspace, case: str
) -> None:
    """A new release that would log every user out is stopped at the "compat" check.

    secret-without-fallback: v2-strict signs cookies with a new secret and does not keep the old
    one; the store is shared (Redis). memory-sessions: one instance per release keeps sessions in
    its own memory, so a session made through v1 is unknown to v2-strict.
    """
    if case == "memory-sessions":
        spec = auth_spec(workspace.port, sessions="memory", instances=1)
    else:
        spec = auth_spec(
            workspace.port,
            sessions="redis",
            redis_url=request.getfixturevalue("redis_url"),
            prefix=request.getfixturevalue("redis_prefix"),
            extra_env={"AUTHAPP_REJECT_OLD_SESSIONS_VERSIONS": "v2-strict"},
        )
    workspace.write_spec(spec)
    keys_dir = init_keys(workspace)
    workspace.zd("up", "--version", "v1")
    with LoggedInUsers(workspace.url, keys_dir, max_seconds=60) as load:
        time.sleep(1)
        result = workspace.zd("deploy", "v2-strict", "--wait", check=False)
        time.sleep(1)
    tally = load.tally
    print(f"\ncompat refusal, {case}: {tally.summary()}")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "session compat FAILED" in result.stderr + result.stdout
    assert [(h.status, h.error) for h in tally.failed] == []
    assert tally.logouts == []
    assert set(tally.versions()) == {"v1"}  # no user ever reached v2-strict

    rollout = workspace.status()["status"]["rollout"]
    assert rollout["phase"] == "failed"
    assert "compat failed before the release got traffic" in rollout["reason"]
    assert "session compat FAILED" in rollout["reason"]
    compat = rollout["checks"]["compat"]
    assert compat["state"] == "failed"
    assert {r["check"]: r["ok"] for r in compat["detail"]["results"]} == {
        "session": False,
        "token": True,
    }
    workspace.wait_for(
        lambda: {i["release"] for i in workspace.status()["instances"]} == {"v1"},
        what="the v2-strict instances to leave",
    )
    assert workspace.status()["status"]["stable"] == "v1"


# --- the demo app's switches, without processes ----------------------------------------------


def test_jwks_url_names_the_running_controller(tmp_path: Path) -> None:
    (tmp_path / "controller.json").write_text('{"url": "http://127.0.0.1:8765", "pid": 1}')
    env = {"ZERODOWN_STATE_DIR": str(tmp_path), "JWKS_URL": "{controller}/.well-known/jwks.json"}
    assert authapp.jwks_url_from(env) == "http://127.0.0.1:8765/.well-known/jwks.json"
    assert authapp.jwks_url_from({"JWKS_URL": "http://127.0.0.1:1/j"}) == "http://127.0.0.1:1/j"
    assert authapp.jwks_url_from({}) is None


@pytest.mark.parametrize(
    ("state", "controller", "message"),
    [
        (False, "", "ZERODOWN_STATE_DIR is not set"),
        (True, None, "controller.json is unreadable"),
        (True, '{"pid": 1}', "controller.json is unreadable"),
        (True, '{"url": "http://10.0.0.5:8765"}', "not a loopback http:// URL"),
        (True, '{"url": "https://127.0.0.1:8765"}', "not a loopback http:// URL"),
    ],
)
def test_jwks_url_refuses_a_missing_or_foreign_controller(
    tmp_path: Path, state: bool, controller: str | None, message: str
) -> None:
    env = {"JWKS_URL": "{controller}/.well-known/jwks.json"}
    if state:
        env["ZERODOWN_STATE_DIR"] = str(tmp_path)
    if controller is not None and state:
        (tmp_path / "controller.json").write_text(controller)
    with pytest.raises(SystemExit, match=message):
        authapp.jwks_url_from(env)


def test_listed_versions_sign_sessions_with_a_secret_of_their_own() -> None:
    env = {
        "SESSION_SECRETS": "secret-new-0123456789, secret-old-0123456789",
        "AUTHAPP_REJECT_OLD_SESSIONS_VERSIONS": "v2-strict, v3",
    }
    assert authapp.session_secrets("v2", env) == ["secret-new-0123456789", "secret-old-0123456789"]
    strict = authapp.session_secrets("v2-strict", env)
    assert len(strict) == 1 and "secret-old-0123456789" not in strict
    assert strict[0] != "secret-new-0123456789"
    assert authapp.session_secrets("v3", env) != strict  # each listed version has its own
