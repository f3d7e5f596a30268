"""The optional read token (`api.read_token`): what it protects, what stays public by design, and
a controller that refuses to start when the token it names cannot be read."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from controller_api import ControllerApi, serve_controller, write_workspace

from zerodown.api.app import make_app
from zerodown.api.controller import Controller
from zerodown.core.errors import SpecError
from zerodown.spec.load import load_spec

READ = "read-secret"
VAR = "ZD_TEST_READ_TOKEN"

READS = [
    "/api/status",
    "/api/history",
    "/api/events?limit=5",
    "/api/flags/definitions",
    "/api/plan",
]
PUBLIC = ["/", "/static/app.js", "/openapi.json", "/.well-known/jwks.json"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerApi]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(VAR, READ)
        with serve_controller(tmp_path_factory.mktemp("ws"), read_token=f"${{{VAR}}}") as served:
            yield served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads_need_the_read_token_or_the_admin_token(api: ControllerApi) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for path in READS:
            refused = http.get(path)
            assert refused.status_code == 401, (path, refused.text)
            assert "api.read_token" in refused.json()["detail"], refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            assert http.get(path, headers=bearer("wrong")).status_code == 401, path
            assert http.get(path, headers=bearer(READ)).status_code == 200, path
            assert http.get(path, headers=api.admin).status_code == 200, path
        # the change stream too (read its first event, then let go)
        assert http.get("/api/flags/stream").status_code == 401
        with http.stream("GET", "/api/flags/stream", headers=bearer(READ)) as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()).startswith("id: ")


def test_the_read_token_changes_nothing_and_reads_no_admin_data(api: ControllerApi) -> None:
    before = api.snapshot()
    with httpx.Client(base_url=api.url, timeout=10, headers=bearer(READ)) as http:
        for path in ("/api/deploy", "/api/abort", "/api/down", "/api/flags", "/api/flags/usage"):
            assert http.post(path, json={}).status_code == 401, path
        for path in ("/api/flags", "/api/flags/audit", "/api/flags/export"):
            assert http.get(path).status_code == 401, path
    assert api.snapshot() == before


def test_ofrep_jwks_and_the_page_stay_public(api: ControllerApi) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for path in PUBLIC:
            assert http.get(path).status_code == 200, path
        assert http.post("/ofrep/v1/evaluate/flags", json={}).status_code == 200
        missing = http.post("/ofrep/v1/evaluate/flags/nope", json={})
        assert missing.status_code == 404 and missing.json()["errorCode"] == "FLAG_NOT_FOUND"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("${ZD_TEST_UNSET_TOKEN}", "${ZD_TEST_UNSET_TOKEN} is not set"),
        ("${ZD_TEST_EMPTY_TOKEN}", "is empty"),
        ("  ", "is empty"),
        ("$", "Invalid placeholder"),
    ],
)
def test_a_read_token_that_cannot_be_read_is_a_spec_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.delenv("ZD_TEST_UNSET_TOKEN", raising=False)
    monkeypatch.setenv("ZD_TEST_EMPTY_TOKEN", "")
    paths = write_workspace(tmp_path, read_token=value)
    controller = Controller(paths, load_spec(paths.spec))
    try:
        with pytest.raises(SpecError) as caught:
            make_app(controller, paths.token())
        assert str(caught.value).startswith(f"{paths.spec}: api.read_token: "), caught.value
        assert says in str(caught.value)
    finally:
        controller.flags.close()
        controller.store.close()


@pytest.mark.slow
def test_the_controller_refuses_to_start_without_its_read_token(tmp_path: Path) -> None:
    paths = write_workspace(tmp_path, read_token="${ZD_TEST_UNSET_TOKEN}")
    env = {k: v for k, v in os.environ.items() if k != "ZD_TEST_UNSET_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "zerodown.api", "-f", str(paths.spec)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "api.read_token: ${ZD_TEST_UNSET_TOKEN} is not set" in done.stderr
    assert not paths.controller_file.exists()
