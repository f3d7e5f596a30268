"""The Python SDK against a real flag service: stream and polling, kill latency, last copy on
memory and disk when the service is down, bootstrap files, and the local OpenFeature provider."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from flagserver import FlagServer, serve
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from support.services import free_port
from zerodown.flags.client import FlagClient, FlagClientError
from zerodown.flags.evaluate import EvalContext
from zerodown.flags.model import Flag
from zerodown.flags.openfeature import ZerodownProvider
from zerodown.flags.unleash import flags_to_unleash


def wait_for(predicate: object, timeout: float = 10.0) -> float:
    """Seconds until predicate() holds; fails after `timeout`."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_client_follows_changes(
    flag_server: FlagServer, client: httpx.Client, mode: str, tmp_path: Path
) -> None:
    h = flag_server.headers
    client.post("/api/flags", json={"key": "checkout", "enabled": True}, headers=h)
    with FlagClient(flag_server.url, mode=mode, poll_interval=0.05) as sdk:  # type: ignore[arg-type]
        assert sdk.wait_until_ready(10)
        assert sdk.is_enabled("checkout")
        assert not sdk.is_enabled("unknown") and sdk.is_enabled("unknown", default=True)
        client.patch("/api/flags/checkout", json={"enabled": False}, headers=h)
        latency = wait_for(lambda: not sdk.is_enabled("checkout"))
        print(f"\nkill reached the SDK ({mode}) in {latency * 1000:.0f} ms")


def test_kill_reaches_a_streaming_client_fast(
    flag_server: FlagServer, client: httpx.Client
) -> None:
    h = flag_server.headers
    client.post("/api/flags", json={"key": "k", "enabled": True}, headers=h)
    with FlagClient(flag_server.url) as sdk:
        assert sdk.wait_until_ready(10)
        latencies = []
        for i in range(5):
            want = i % 2 == 1
            client.patch("/api/flags/k", json={"enabled": want}, headers=h)
            latencies.append(wait_for(lambda want=want: sdk.is_enabled("k") is want))
        print(f"\nflag change → SDK via stream: max {max(latencies) * 1000:.0f} ms of 5")


@pytest.mark.slow
def test_keeps_last_copy_in_memory_and_on_disk(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "flags.json"
    with serve(tmp_path / "flags.db") as server:
        httpx.post(
            f"{server.url}/api/flags",
            json={"key": "a", "enabled": True},
            headers=server.headers,
        ).raise_for_status()
        sdk = FlagClient(server.url, cache_path=cache, max_backoff=0.2)
        assert sdk.wait_until_ready(10)
    try:
        # The service is gone: the client keeps its copy and keeps retrying quietly.
        wait_for(lambda: sdk.last_error is not None)
        assert sdk.is_enabled("a")
    finally:
        sdk.close()
    assert json.loads(cache.read_text())["flags"][0]["key"] == "a"
    dead = f"http://127.0.0.1:{free_port()}"
    with FlagClient(dead, cache_path=cache) as offline:
        assert offline.source == "cache" and offline.is_enabled("a")


def test_bootstrap_files(tmp_path: Path) -> None:
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"version": 3, "flags": [{"key": "x", "enabled": True}]}))
    unleash = tmp_path / "unleash.json"
    unleash.write_text(json.dumps(flags_to_unleash([Flag(key="y", enabled=True)])))
    with FlagClient(bootstrap=ours) as a, FlagClient(bootstrap=unleash) as b:
        assert a.source == "bootstrap" and a.is_enabled("x")
        assert b.is_enabled("y")
    bad = tmp_path / "bad.json"
    bad.write_text('{"flags": [{"key": "a b"}]}')
    with pytest.raises(FlagClientError, match=r"bad\.json"):
        FlagClient(bootstrap=bad)


def test_a_server_copy_replaces_the_bootstrap(
    flag_server: FlagServer, client: httpx.Client
) -> None:
    client.post("/api/flags", json={"key": "b", "enabled": False}, headers=flag_server.headers)
    boot = {"version": 99, "flags": [{"key": "b", "enabled": True}]}
    with FlagClient(flag_server.url, bootstrap=boot) as sdk:
        assert sdk.wait_until_ready(10)
        assert not sdk.is_enabled("b")


def test_usage_reports_reach_the_stale_report(
    flag_server: FlagServer, client: httpx.Client
) -> None:
    client.post("/api/flags", json={"key": "u", "enabled": True}, headers=flag_server.headers)
    # usage reports need the admin token (they change the stale report)
    with FlagClient(flag_server.url, token=flag_server.token, usage_interval=0.0) as sdk:
        assert sdk.wait_until_ready(10)
        sdk.is_enabled("u")
    flag = client.get("/api/flags/u", headers=flag_server.headers).json()
    assert flag["last_evaluated_at"] is not None


def test_usage_reports_without_the_admin_token_stop_with_one_warning(
    flag_server: FlagServer, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.post("/api/flags", json={"key": "w", "enabled": True}, headers=flag_server.headers)
    with FlagClient(flag_server.url, usage_interval=0.0) as sdk:
        assert sdk.wait_until_ready(10)
        for _ in range(3):
            sdk.is_enabled("w")
            sdk._flush_usage()
    warnings = [r for r in caplog.records if "usage_token" in r.getMessage()]
    assert len(warnings) == 1
    flag = client.get("/api/flags/w", headers=flag_server.headers).json()
    assert flag["last_evaluated_at"] is None


def test_usage_token_reports_for_a_client_that_reads_without_one(
    flag_server: FlagServer, client: httpx.Client
) -> None:
    client.post("/api/flags", json={"key": "v", "enabled": True}, headers=flag_server.headers)
    with FlagClient(flag_server.url, usage_token=flag_server.token, usage_interval=0.0) as sdk:
        assert sdk.wait_until_ready(10)
        sdk.is_enabled("v")
    flag = client.get("/api/flags/v", headers=flag_server.headers).json()
    assert flag["last_evaluated_at"] is not None


def test_local_openfeature_provider(flag_server: FlagServer, client: httpx.Client) -> None:
    h = flag_server.headers
    client.post("/api/flags", json={"key": "on", "enabled": True}, headers=h)
    client.post(
        "/api/flags",
        json={
            "key": "ratio",
            "enabled": True,
            "variants": [{"name": "r", "weight": 1, "payload": {"type": "number", "value": "0.5"}}],
        },
        headers=h,
    )
    client.post(
        "/api/flags",
        json={
            "key": "vip",
            "enabled": True,
            "strategies": [{"kind": "user_ids", "user_ids": ["42"]}],
        },
        headers=h,
    )
    sdk = FlagClient(flag_server.url)
    assert sdk.wait_until_ready(10)
    api.set_provider(ZerodownProvider(sdk))
    try:
        of = api.get_client()
        assert of.get_boolean_value("on", False) is True
        assert of.get_float_value("ratio", 0.0) == 0.5
        assert of.get_boolean_value("vip", False, EvaluationContext("42")) is True
        assert of.get_boolean_value("vip", True, EvaluationContext("7")) is False
        d = of.get_boolean_details("missing", True)
        assert d.value is True and d.reason == Reason.ERROR
        assert of.get_string_value("on", "dflt") == "dflt"  # type mismatch → default
        assert sdk.evaluate("vip", EvalContext(user_id="42")) is not None
    finally:
        api.clear_providers()  # shuts the provider down, which closes the client


@pytest.mark.slow  # over half a second: the full suite runs it
def test_many_streaming_clients_update_together(
    flag_server: FlagServer, client: httpx.Client
) -> None:
    h = flag_server.headers
    client.post("/api/flags", json={"key": "k", "enabled": True}, headers=h)
    sdks = [FlagClient(flag_server.url) for _ in range(5)]
    try:
        for sdk in sdks:
            assert sdk.wait_until_ready(10)
        client.patch("/api/flags/k", json={"enabled": False}, headers=h)
        wait_for(lambda: not any(sdk.is_enabled("k") for sdk in sdks))
        versions = {sdk.version for sdk in sdks}
        assert len(versions) == 1
    finally:
        for sdk in sdks:
            sdk.close()
    # A later client (a new watcher generation) still gets the current definitions.
    with FlagClient(flag_server.url) as late:
        assert late.wait_until_ready(10) and not late.is_enabled("k")
