"""The router's per-flag-variant pseudo-releases: parsing `X-Zerodown-Flags` and its names."""

from __future__ import annotations

import pytest

from zerodown.core.model import flag_release
from zerodown.flags.context import header_value
from zerodown.routers.proxy.stats import (
    MAX_FLAGS_PER_RESPONSE,
    ReleaseCounters,
    parse_flags_header,
    prometheus_text,
)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (b"new-checkout=on", ("flag:new-checkout=on",)),
        (b"a=on,b=blue", ("flag:a=on", "flag:b=blue")),
        (b" a = off , b=green ", ("flag:a=off", "flag:b=green")),
        (b"a=on,a=off", ("flag:a=on",)),  # one count per flag: the first wins
        (b"a,=on,b=,c=on", ("flag:c=on",)),  # malformed items are skipped
        (b"", ()),
        (b"caf%C3%A9=big%20one", ("flag:café=big one",)),  # percent-decoded
    ],
)
def test_parse_flags_header(value: bytes, names: tuple[str, ...]) -> None:
    assert parse_flags_header(value) == names
    assert parse_flags_header(value) == names  # the cached answer is the same


def test_names_round_trip_the_middleware_header() -> None:
    used = {"new-checkout": "on", "banner": "green", "ünï": "a,b=c"}
    value = header_value(used).encode("latin-1")
    assert sorted(parse_flags_header(value)) == sorted(flag_release(k, v) for k, v in used.items())


def test_too_many_flags_or_too_long_names_are_bounded() -> None:
    many = ",".join(f"f{i}=on" for i in range(100)).encode()
    assert len(parse_flags_header(many)) == MAX_FLAGS_PER_RESPONSE
    assert parse_flags_header(b"x" * 300 + b"=on,y=off") == ("flag:y=off",)


def test_flag_pseudo_releases_in_prometheus_text() -> None:
    on = ReleaseCounters(samples=10)
    on.record(500, 0.01, 1000.0, transport_error=False)
    on.record(200, 0.02, 1001.0, transport_error=False)
    text = prometheus_text({"v1": ReleaseCounters(), "flag:a=on": on}, [])
    assert 'zerodown_requests_total{release="flag:a=on",code="500"} 1' in text
    assert 'zerodown_request_seconds_count{release="flag:a=on"} 2' in text
    assert on.samples_since(1000.5) == [[1001.0, 0.02, 200]]
