"""The session format: old and new releases read each other's documents."""

from __future__ import annotations

import json

import pytest

from zerodown.sessions.format import FORMAT, SessionFormatError, SessionRecord, decode, encode


def test_round_trip() -> None:
    record = SessionRecord(data={"user": "ann", "cart": [1, 2]}, created_at=12.5)
    assert decode(encode(record)) == record


def test_document_is_plain_versioned_json() -> None:
    doc = json.loads(encode(SessionRecord(data={"a": 1}, created_at=1.0)))
    assert doc == {"format": FORMAT, "min_reader": 1, "created_at": 1.0, "data": {"a": 1}}


def test_newer_additive_document_is_read_and_its_fields_kept() -> None:
    newer = {"format": FORMAT + 1, "min_reader": 1, "created_at": 3.0, "data": {}, "csrf": "x"}
    record = decode(json.dumps(newer))
    assert record.extra == {"csrf": "x"}
    again = json.loads(encode(record))
    assert again["csrf"] == "x"
    assert again["format"] == FORMAT  # written by this release, which is honest about itself


def test_document_that_needs_a_newer_reader_is_refused() -> None:
    newer = {"format": FORMAT + 1, "min_reader": FORMAT + 1, "created_at": 3.0, "data": {}}
    with pytest.raises(SessionFormatError, match="needs a reader of format"):
        decode(json.dumps(newer))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"format": 1, "data": []}', "lacks `data`"),
        ("\x80\x04pickle", "not JSON"),
    ],
)
def test_garbage_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(SessionFormatError, match=reason):
        decode(text)


def test_nan_is_not_written() -> None:
    with pytest.raises(TypeError, match="must be JSON"):
        encode(SessionRecord(data={"x": float("nan")}, created_at=1.0))
