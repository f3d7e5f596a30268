"""The official OpenFeature OFREP provider (`openfeature-provider-ofrep`), unchanged, against our
flag service on a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from flagserver import FlagServer
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from zerodown.flags.evaluate import normalized_value


@pytest.fixture
def provider(flag_server: FlagServer) -> Iterator[OFREPProvider]:
    p = OFREPProvider(flag_server.url, timeout=5)
    api.set_provider(p)
    try:
        yield p
    finally:
        api.clear_providers()
        p.session.close()


def test_official_ofrep_provider_evaluates_our_flags(
    flag_server: FlagServer, client: httpx.Client, provider: OFREPProvider
) -> None:
    h = flag_server.headers
    flags = [
        {"key": "kill", "type": "kill-switch", "enabled": True},
        {
            "key": "ramp",
            "enabled": True,
            "strategies": [{"kind": "gradual_rollout", "rollout": 40, "stickiness": "userId"}],
        },
        {
            "key": "beta",
            "enabled": True,
            "strategies": [
                {
                    "kind": "default",
                    "constraints": [{"context_name": "plan", "operator": "IN", "values": ["pro"]}],
                }
            ],
        },
        {
            "key": "banner",
            "enabled": True,
            "variants": [
                {"name": "a", "weight": 1, "payload": {"type": "string", "value": "Hello"}}
            ],
        },
        {
            "key": "limit",
            "enabled": True,
            "variants": [{"name": "n", "weight": 1, "payload": {"type": "number", "value": "42"}}],
        },
        {
            "key": "cfg",
            "enabled": True,
            "variants": [
                {"name": "j", "weight": 1, "payload": {"type": "json", "value": '{"a": [1]}'}}
            ],
        },
    ]
    for f in flags:
        assert client.post("/api/flags", json=f, headers=h).status_code == 201

    of = api.get_client()
    assert of.get_boolean_value("kill", False) is True

    for uid in ("1", "2", "3", "4", "5", "6"):
        ctx = EvaluationContext(targeting_key=uid)
        details = of.get_boolean_details("ramp", False, ctx)
        assert details.value is (normalized_value(uid, "ramp") <= 40)

    pro = of.get_boolean_details("beta", False, EvaluationContext("u", {"plan": "pro"}))
    assert pro.value is True and pro.reason == Reason.TARGETING_MATCH
    free = of.get_boolean_details("beta", True, EvaluationContext("u", {"plan": "free"}))
    assert free.value is False and free.reason == Reason.DEFAULT

    banner = of.get_string_details("banner", "x")
    assert (banner.value, banner.variant, banner.reason) == ("Hello", "a", Reason.SPLIT)
    assert of.get_integer_value("limit", 0) == 42
    assert of.get_object_value("cfg", {}) == {"a": [1]}

    missing = of.get_boolean_details("nope", True)
    assert missing.value is True and missing.error_code == ErrorCode.FLAG_NOT_FOUND
    mismatch = of.get_string_details("kill", "dflt")
    assert mismatch.value == "dflt" and mismatch.error_code == ErrorCode.TYPE_MISMATCH

    # A kill is seen by the very next evaluation (remote evaluation, no cache).
    client.patch("/api/flags/kill", json={"enabled": False}, headers=h)
    killed = of.get_boolean_details("kill", True)
    assert killed.value is False and killed.reason == Reason.DISABLED
