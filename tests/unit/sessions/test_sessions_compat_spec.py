"""The `compat:` section of zerodown.yaml."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from zerodown.sessions.compat import CompatResult, CompatSpec, parse_request


def test_the_issue_example_parses() -> None:
    text = """
session: {request: GET /me, expect: {status: 200}}
token:   {request: GET /api/me, expect: {status: 200}}
"""
    spec = CompatSpec.model_validate(yaml.safe_load(text))
    assert spec.session is not None and spec.session.request == "GET /me"
    assert spec.session.login == "POST /login"
    assert spec.token is not None and spec.token.expect.status == 200
    assert spec.token.keys == ".zerodown/keys"


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        ({"session": {"request": "/me"}}, "session.request", "GET /me"),
        ({"token": {"request": "FETCH /x"}}, "token.request", "not a request"),
        ({"token": {"expect": {"status": 42}}}, "token.expect.status", "greater than"),
        ({"session": {"reqest": "GET /me"}}, "session.reqest", "Extra inputs"),
        ({"cookies": {}}, "cookies", "Extra inputs"),
    ],
)
def test_bad_specs_name_the_field(doc: dict[str, object], where: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        CompatSpec.model_validate(doc)
    err = info.value.errors()[0]
    assert ".".join(str(p) for p in err["loc"]) == where
    assert message in err["msg"]


def test_parse_request() -> None:
    assert parse_request(" POST /login?user=x ") == ("POST", "/login?user=x")


def test_result_reads_well() -> None:
    assert str(CompatResult(False, "token", "no")) == "token compat FAILED: no"
