"""Cookie signing keyring and the session manager's save/touch/delete decisions."""

from __future__ import annotations

import pytest

from zerodown.sessions.session import Session, SessionManager
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import MemorySessionStore

OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"


def test_newest_signs_every_listed_key_verifies() -> None:
    old = SecretKeyring([OLD])
    both = SecretKeyring([NEW, OLD])
    by_old = old.sign("sid1")
    got = both.unsign(by_old)
    assert got is not None and got.value == "sid1" and not got.by_newest
    by_new = both.sign("sid1")
    got = both.unsign(by_new)
    assert got is not None and got.by_newest
    assert old.unsign(by_new) is None  # the old release cannot verify the new key's cookies
    assert SecretKeyring([NEW]).unsign(by_old) is None  # a dropped key verifies nothing


@pytest.mark.parametrize("bad", ["", "sid1", ".", "sid1.", "sid1.AAAA", "sid2." + "x" * 43])
def test_forged_or_truncated_values_are_refused(bad: str) -> None:
    assert SecretKeyring([NEW]).unsign(bad) is None


def test_salt_binds_keys_to_a_purpose() -> None:
    a = SecretKeyring([NEW], salt="sessions")
    b = SecretKeyring([NEW], salt="csrf")
    assert b.unsign(a.sign("v")) is None


def test_secrets_never_show() -> None:
    ring = SecretKeyring([NEW, OLD])
    assert NEW not in repr(ring) and OLD not in str(ring)


@pytest.mark.parametrize("secrets", [[], ["short"]])
def test_weak_configuration_is_refused_with_what_to_do(secrets: list[str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        SecretKeyring(secrets)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERODOWN_SESSION_SECRETS", f" {NEW} , {OLD} ")
    ring = SecretKeyring.from_env()
    assert ring.unsign(SecretKeyring([OLD]).sign("x")) is not None
    monkeypatch.setenv("ZERODOWN_SESSION_SECRETS", "")
    with pytest.raises(ValueError, match="ZERODOWN_SESSION_SECRETS"):
        SecretKeyring.from_env()


def _manager(store: MemorySessionStore, secrets: list[str]) -> SessionManager:
    return SessionManager(store, SecretKeyring(secrets))


def _value(set_cookie: str | None) -> str:
    assert set_cookie is not None
    return set_cookie.split(";")[0].split("=", 1)[1]


def test_manager_lifecycle() -> None:
    store = MemorySessionStore()
    m = _manager(store, [NEW])
    s = m.load(None)
    assert m.commit(s) is None  # no session, no cookie
    s["user"] = "ann"
    cookie = m.commit(s)
    assert cookie is not None and "HttpOnly" in cookie and "Max-Age=1800" in cookie
    s2 = m.load(_value(cookie))
    assert s2 == {"user": "ann"} and not s2.new
    assert _value(m.commit(s2)) == _value(cookie)  # read-only: touched, same cookie
    s2.clear()
    gone = m.commit(s2)
    assert gone is not None and "Max-Age=0" in gone
    assert m.load(_value(cookie)) == {}


def test_rotate_id_changes_the_id_and_drops_the_old_one() -> None:
    store = MemorySessionStore()
    m = _manager(store, [NEW])
    s = m.load(None)
    s["user"] = "ann"
    first = _value(m.commit(s))
    s = m.load(first)
    s.rotate_id()
    second = _value(m.commit(s))
    assert second != first
    assert m.load(first) == {} and m.load(second) == {"user": "ann"}


def test_secret_rotation_logs_nobody_out_and_re_signs() -> None:
    store = MemorySessionStore()
    old, new = _manager(store, [OLD]), _manager(store, [NEW, OLD])
    s = old.load(None)
    s["user"] = "ann"
    cookie = _value(old.commit(s))
    s = new.load(cookie)
    assert s == {"user": "ann"}
    resigned = _value(new.commit(s))
    assert resigned != cookie
    assert _manager(store, [NEW]).load(resigned) == {"user": "ann"}


def test_cookie_header_parsing() -> None:
    m = _manager(MemorySessionStore(), [NEW])
    assert m.cookie_value("a=1; zd_session=abc.def; b=2") == "abc.def"
    assert m.cookie_value("zd_sessionx=1") is None
    assert m.cookie_value(None) is None


def test_session_tracks_changes() -> None:
    s = Session({"a": 1}, sid="x")
    assert not s.modified
    s.setdefault("b", 2)
    assert s.modified


def test_session_from_a_newer_format_is_a_fresh_session_and_left_intact() -> None:
    import json

    store = MemorySessionStore()
    m = _manager(store, [NEW])
    s = m.load(None)
    s["user"] = "ann"
    cookie = _value(m.commit(s))
    sid = m.load(cookie).sid
    assert sid is not None
    newer = json.dumps({"format": 9, "min_reader": 9, "created_at": 1.0, "data": {"u": 1}})
    store._items[sid] = (newer, store._items[sid][1])
    assert m.load(cookie) == {}  # a fresh session, not a crash, and not a misread one
    assert store._items[sid][0] == newer
