"""The flag HTTP API: admin CRUD with a token and an audit log, definitions with ETag, OFREP."""

from __future__ import annotations

from pathlib import Path

import httpx
from flagserver import TOKEN, serve

AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Zerodown-Actor": "ann"}


def create(client: httpx.Client, key: str, **fields: object) -> dict[str, object]:
    r = client.post("/api/flags", json={"key": key, **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_admin_needs_the_token(client: httpx.Client) -> None:
    assert client.get("/api/flags").status_code == 401
    assert client.post("/api/flags", json={"key": "a"}).status_code == 401
    r = client.post("/api/flags", json={"key": "a"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert client.get("/api/flags", headers=AUTH).json()["flags"] == []


def test_crud_and_audit(client: httpx.Client) -> None:
    create(client, "new-checkout", type="release", owner="team-a")
    assert client.post("/api/flags", json={"key": "new-checkout"}, headers=AUTH).status_code == 409
    r = client.patch(
        "/api/flags/new-checkout", json={"rollout": "25%", "note": "ramp"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    flag = r.json()
    assert flag["enabled"] is True
    assert flag["strategies"][0]["kind"] == "gradual_rollout"
    assert flag["strategies"][0]["rollout"] == 25
    r = client.patch("/api/flags/new-checkout", json={"enabled": False}, headers=AUTH)
    assert r.json()["enabled"] is False
    assert client.patch("/api/flags/x", json={"enabled": True}, headers=AUTH).status_code == 404
    bad = client.patch("/api/flags/new-checkout", json={"rollout": "150%"}, headers=AUTH)
    assert bad.status_code == 422 and "0% to 100%" in bad.text
    body = {**client.get("/api/flags/new-checkout", headers=AUTH).json(), "description": "d"}
    assert (
        client.put("/api/flags/new-checkout", json=body, headers=AUTH).json()["description"] == "d"
    )
    assert client.put("/api/flags/other", json=body, headers=AUTH).status_code == 422
    assert client.delete("/api/flags/new-checkout", headers=AUTH).status_code == 204
    assert client.get("/api/flags/new-checkout", headers=AUTH).status_code == 404
    entries = client.get("/api/flags/audit", headers=AUTH).json()["entries"]
    assert [e["action"] for e in entries] == ["delete", "update", "update", "update", "create"]
    assert {e["actor"] for e in entries} == {"ann"}
    ramp = entries[3]
    assert ramp["note"] == "ramp" and ramp["before"]["enabled"] is False
    assert ramp["after"]["enabled"] is True and ramp["at"]


def test_bad_flag_is_a_clear_422(client: httpx.Client) -> None:
    r = client.post("/api/flags", json={"key": "a b", "type": "forever"}, headers=AUTH)
    assert r.status_code == 422
    fields = {tuple(e["loc"][1:]) for e in r.json()["detail"]}
    assert ("key",) in fields and ("type",) in fields


def test_definitions_etag(client: httpx.Client) -> None:
    create(client, "a", enabled=True)
    r = client.get("/api/flags/definitions")
    assert r.status_code == 200 and [f["key"] for f in r.json()["flags"]] == ["a"]
    etag = r.headers["etag"]
    assert client.get("/api/flags/definitions", headers={"If-None-Match": etag}).status_code == 304
    client.patch("/api/flags/a", json={"enabled": False}, headers=AUTH)
    r2 = client.get("/api/flags/definitions", headers={"If-None-Match": etag})
    assert r2.status_code == 200 and r2.headers["etag"] != etag


def test_ofrep_single_and_bulk(client: httpx.Client) -> None:
    create(client, "on", enabled=True)
    create(client, "off")
    create(
        client,
        "color",
        enabled=True,
        variants=[{"name": "blue", "weight": 1, "payload": {"type": "string", "value": "#00f"}}],
    )
    r = client.post("/ofrep/v1/evaluate/flags/on", json={"context": {"targetingKey": "u1"}})
    assert r.status_code == 200
    assert r.json() | {"metadata": None} == {
        "key": "on",
        "value": True,
        "variant": "on",
        "reason": "STATIC",
        "metadata": None,
    }
    off = client.post("/ofrep/v1/evaluate/flags/off", json={"context": {}}).json()
    assert (off["value"], off["reason"]) == (False, "DISABLED")
    color = client.post("/ofrep/v1/evaluate/flags/color", json={}).json()
    assert (color["value"], color["variant"], color["reason"]) == ("#00f", "blue", "SPLIT")
    missing = client.post("/ofrep/v1/evaluate/flags/nope", json={})
    assert missing.status_code == 404 and missing.json()["errorCode"] == "FLAG_NOT_FOUND"
    bad = client.post("/ofrep/v1/evaluate/flags/on", json={"context": "x"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_CONTEXT"

    bulk = client.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u1"}})
    assert bulk.status_code == 200
    assert {f["key"] for f in bulk.json()["flags"]} == {"on", "off", "color"}
    etag = bulk.headers["etag"]
    again = client.post(
        "/ofrep/v1/evaluate/flags",
        json={"context": {"targetingKey": "u1"}},
        headers={"If-None-Match": etag},
    )
    assert again.status_code == 304
    client.patch("/api/flags/on", json={"enabled": False}, headers=AUTH)
    changed = client.post(
        "/ofrep/v1/evaluate/flags",
        json={"context": {"targetingKey": "u1"}},
        headers={"If-None-Match": etag},
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_ofrep_marks_flags_evaluated_for_the_stale_report(client: httpx.Client) -> None:
    create(client, "on", enabled=True)
    client.post("/ofrep/v1/evaluate/flags/on", json={})
    assert client.get("/api/flags/on", headers=AUTH).json()["last_evaluated_at"] is not None
    report = client.get("/api/flags/stale", headers=AUTH).json()
    assert report == {"stale": []}


def test_read_token(tmp_path: Path) -> None:
    with (
        serve(tmp_path / "f.db", read_token="reader") as server,
        httpx.Client(base_url=server.url) as c,
    ):
        reader = {"Authorization": "Bearer reader"}
        assert c.get("/api/flags/definitions").status_code == 401
        assert c.get("/api/flags/definitions", headers=reader).status_code == 200
        assert c.get("/api/flags", headers=reader).status_code == 401
        # usage reports change the stale report: the admin token, not the read token
        assert c.post("/api/flags/usage", json={"keys": []}, headers=reader).status_code == 401
        # OFREP evaluation is public by design (values for a context, never the rules)
        assert c.post("/ofrep/v1/evaluate/flags", json={}).status_code == 200


def test_unleash_export_import_round_trip(client: httpx.Client) -> None:
    create(
        client,
        "a",
        enabled=True,
        strategies=[{"kind": "gradual_rollout", "rollout": 30, "stickiness": "userId"}],
    )
    exported = client.get("/api/flags/export?format=unleash", headers=AUTH).json()
    assert exported["features"][0]["strategies"][0]["name"] == "flexibleRollout"
    client.delete("/api/flags/a", headers=AUTH)
    r = client.post("/api/flags/import", json=exported, headers=AUTH)
    assert r.json() == {"created": ["a"], "updated": []}
    flag = client.get("/api/flags/a", headers=AUTH).json()
    assert flag["strategies"][0]["rollout"] == 30 and flag["strategies"][0]["group_id"] == "a"
    bad = client.post("/api/flags/import", json={"nothing": 1}, headers=AUTH)
    assert bad.status_code == 422 and "features" in bad.text
