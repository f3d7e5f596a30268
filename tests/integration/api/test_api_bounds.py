"""What bad input does to the controller's API (issue 10, section 4): every parameter is bounded
(422 naming it), bodies are limited while they are read (413), an unexpected error is a JSON 500
that leaves the connection usable, and every change needs the token."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from controller_api import ControllerApi, serve_controller

from zerodown.api.app import MAX_BODY
from zerodown.flags.api import MAX_TEXT

HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerApi]:
    """One controller for the module (each test compares its own before and after)."""
    with serve_controller(tmp_path_factory.mktemp("controller")) as served:
        yield served


def get(api: ControllerApi, path: str, **kw: Any) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        return http.get(path, **kw)


def post(api: ControllerApi, path: str, **kw: Any) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        return http.post(path, **kw)


def messages(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    if isinstance(detail, str):
        return detail
    return "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)


def exchange(api: ControllerApi, raw: bytes, *, answers: int) -> list[bytes]:
    """Send raw bytes on one connection; the first `answers` responses (status line + body)."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(raw)
        reader = conn.makefile("rb")
        found = []
        for _ in range(answers):
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            found.append(status + reader.read(length))
        return found


# ---- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/api/events?limit={HUGE}", "query.limit"),
        (f"/api/events?after={HUGE}", "query.after"),
        ("/api/events?limit=0", "query.limit"),
        ("/api/events?after=-1", "query.after"),
        ("/api/flags/stale?settled_days=13499278036764", "query.settled_days"),
        ("/api/flags/stale?unused_days=36501", "query.unused_days"),
        (f"/api/flags/audit?key={'k' * 201}", "query.key"),
        (f"/api/flags/audit?limit={HUGE}", "query.limit"),
        (f"/api/flags/{'k' * 201}", "path.key"),
        ("/api/flags/export?format=yaml", "query.format"),
    ],
)
def test_a_parameter_out_of_bounds_is_a_422_naming_it(
    api: ControllerApi, path: str, field: str
) -> None:
    r = get(api, path, headers=api.admin)
    assert r.status_code == 422, r.text
    assert messages(r).startswith(f"{field}: "), messages(r)


def test_reads_are_open_without_a_read_token(api: ControllerApi) -> None:
    for path in ("/api/status", "/api/history", "/api/events", "/api/flags/definitions"):
        assert get(api, path).status_code == 200, path


def test_bounds_leave_ordinary_values_alone(api: ControllerApi) -> None:
    assert get(api, "/api/events?after=9223372036854775807&limit=1000").json() == []
    stale = get(api, "/api/flags/stale?unused_days=36500&settled_days=36500", headers=api.admin)
    assert stale.status_code == 200, stale.text


def test_an_ofrep_key_or_context_out_of_bounds_is_a_4xx(api: ControllerApi) -> None:
    assert post(api, f"/ofrep/v1/evaluate/flags/{'k' * 201}", json={}).status_code == 422
    for body in (b"[" * 100_000, b'{"context": {"n": ' + b"9" * 5000 + b"}}"):
        r = post(api, "/ofrep/v1/evaluate/flags", content=body)
        assert r.status_code == 400 and r.json()["errorCode"] == "PARSE_ERROR", r.text


def test_deploy_refuses_a_bad_version_and_records_nothing(api: ControllerApi) -> None:
    before = api.snapshot()
    for version in ("x/y", "v" * 300, "../etc", "", " v1"):
        r = post(api, "/api/deploy", json={"version": version, "spec": api.spec}, headers=api.admin)
        assert r.status_code == 422, (version, r.text)
        assert messages(r).startswith("body.version: "), messages(r)
    assert api.snapshot() == before


def test_deploy_refuses_a_spec_nested_too_deep(api: ControllerApi) -> None:
    deep: dict[str, Any] = {}
    for _ in range(200):
        deep = {"a": deep}
    r = post(api, "/api/deploy", json={"version": "v1", "spec": deep}, headers=api.admin)
    assert r.status_code == 422 and "nests deeper than" in messages(r), r.text


def test_validation_errors_do_not_echo_the_input(api: ControllerApi) -> None:
    big = "x" * 500_000
    r = post(api, "/api/deploy", json={"version": "v1", "spec": big}, headers=api.admin)
    assert r.status_code == 422 and len(r.content) < 1000, r.text[:300]


# ---- bodies -----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: ControllerApi) -> None:
    # Announce 10 MB, send 100 bytes of it: the answer comes without the rest.
    head = (
        "POST /api/flags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {api.token}\r\nContent-Length: {10 * MAX_BODY}\r\n\r\n"
    )
    before = api.snapshot()
    (answer,) = exchange(api, head.encode() + b"{" * 100, answers=1)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"larger than 1048576 bytes" in answer
    assert api.snapshot() == before


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(api: ControllerApi) -> None:
    before = api.snapshot()
    sent = 0

    def chunks() -> Any:
        nonlocal sent
        yield b'{"key": "big", "description": "'
        while sent < 10 * MAX_BODY:
            sent += 64 * 1024
            yield b"x" * 64 * 1024
        yield b'"}'

    try:
        r = post(api, "/api/flags", content=chunks(), headers=api.admin)
        assert r.status_code == 413, r.text
    except httpx.TransportError:
        pass  # the controller may close while the client still sends: a refusal too
    assert api.snapshot() == before
    assert sent < 10 * MAX_BODY  # the client was stopped early, not read to the end


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ({"key": "f", "description": "d" * (MAX_TEXT + 1)}, "description"),
        ({"key": "f", "owner": "o" * (MAX_TEXT + 1)}, "owner"),
        ({"key": "k" * 201}, "key"),
        ({"key": "f", "variants": [{"name": "v" * (MAX_TEXT + 1), "weight": 1}]}, "variants.0"),
        (
            {"key": "f", "strategies": [{"kind": "user_ids", "user_ids": ["u"] * 1001}]},
            "strategies.0.user_ids",
        ),
    ],
)
def test_flag_fields_are_bounded(api: ControllerApi, flag: dict[str, Any], field: str) -> None:
    before = api.snapshot()
    r = post(api, "/api/flags", json=flag, headers=api.admin)
    assert r.status_code == 422 and field in messages(r), r.text[:500]
    put = httpx.put(f"{api.url}/api/flags/f", json=flag, headers=api.admin)
    assert put.status_code == 422, put.text[:500]
    imported = post(api, "/api/flags/import", json={"flags": [flag]}, headers=api.admin)
    assert imported.status_code == 422 and field in imported.text, imported.text[:500]
    assert api.snapshot() == before


def test_a_flag_within_the_bounds_is_accepted(api: ControllerApi) -> None:
    flag = {"key": "within", "description": "d" * MAX_TEXT, "owner": "team"}
    assert post(api, "/api/flags", json=flag, headers=api.admin).status_code == 201
    note = {"enabled": True, "note": "n" * (MAX_TEXT + 1)}
    patched = httpx.patch(f"{api.url}/api/flags/within", json=note, headers=api.admin)
    assert patched.status_code == 422, patched.text


# ---- errors -----------------------------------------------------------------------------------


def test_after_an_unexpected_error_the_connection_still_answers(tmp_path: Path) -> None:
    pipelined = (
        b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with serve_controller(tmp_path) as broken:
        # A status document another program damaged: a fault of the controller, not bad input.
        with sqlite3.connect(broken.controller.store.path) as db:
            db.execute("INSERT OR REPLACE INTO status VALUES ('shop', '[]')")
        failed, next_one = exchange(broken, pipelined, answers=2)
    assert failed.startswith(b"HTTP/1.1 500 "), failed
    body = json.loads(failed.split(b"\r\n")[-1])
    assert body == {"detail": "internal error (AttributeError); the controller's log has details"}
    assert next_one.startswith(b"HTTP/1.1 200 "), next_one


@pytest.mark.slow  # a second or more: the full suite runs it
def test_a_store_locked_by_another_process_is_a_503_to_retry(tmp_path: Path) -> None:
    with serve_controller(tmp_path) as locked:
        deploy = {"json": {"version": "v1", "spec": locked.spec}, "headers": locked.admin}
        holder = sqlite3.connect(locked.controller.store.path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            r = post(locked, "/api/deploy", **deploy)
            assert get(locked, "/api/status").status_code == 200  # WAL: reads go on
        finally:
            holder.close()
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert "locked" in r.json()["detail"]
        assert post(locked, "/api/deploy", **deploy).status_code == 200  # once it is released


def test_jwks_without_a_keyring_is_an_empty_set(api: ControllerApi) -> None:
    r = get(api, "/.well-known/jwks.json")
    assert r.status_code == 200 and r.json() == {"keys": []}
    assert r.headers["cache-control"] == "no-cache"


# ---- tokens -----------------------------------------------------------------------------------


def test_flag_usage_needs_the_token(api: ControllerApi) -> None:
    assert post(api, "/api/flags", json={"key": "u"}, headers=api.admin).status_code == 201

    def used() -> Any:
        return get(api, "/api/flags/u", headers=api.admin).json()["last_evaluated_at"]

    r = post(api, "/api/flags/usage", json={"keys": ["u"]})
    assert r.status_code == 401 and ".zerodown/token" in r.json()["detail"]
    assert used() is None
    too_many = post(api, "/api/flags/usage", json={"keys": ["u"] * 10_001}, headers=api.admin)
    assert too_many.status_code == 422
    assert post(api, "/api/flags/usage", json={"keys": ["u"]}, headers=api.admin).status_code == 204
    assert used() is not None


def test_every_change_needs_the_token(api: ControllerApi) -> None:
    """Each operation of the OpenAPI document that is not a read, without a token: a 401."""
    openapi = get(api, "/openapi.json").json()
    public = {"/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/{key}"}
    writes = [
        (method, path)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method != "get" and path not in public
    ]
    assert len(writes) >= 14, writes
    before = api.snapshot()
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for method, path in writes:
            r = http.request(method, path.replace("{key}", "seeded"), json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert api.snapshot() == before
