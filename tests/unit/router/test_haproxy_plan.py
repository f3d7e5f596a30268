"""HAProxy state from a route table (plan), its binary checks, and what kind haproxy refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.specs import refusal
from zerodown.core.errors import PermanentDriverError
from zerodown.core.routes import Backend, Match, Pool, RouteTable, Sticky
from zerodown.routers.haproxy import process
from zerodown.routers.haproxy.config import MURMUR3_LUA, Files, render
from zerodown.routers.haproxy.plan import (
    Key,
    Rules,
    TooManyReleases,
    assign_slots,
    desired,
    map_names,
    split_weights,
)

RULES = Rules(listen="127.0.0.1:8080", preview_listen=None, header_timeout=10.0)


def pool(release: str, weight: int, *ports: int) -> Pool:
    return Pool(
        release, weight, tuple(Backend(f"127.0.0.1:{p}", f"shop-{release}-{p}") for p in ports)
    )


def test_split_weights_give_each_pool_its_share() -> None:
    canary, stable = pool("v2", 5, 1), pool("v1", 95, 2, 3)
    weights = split_weights([(canary, 5), (stable, 95)])
    total = sum(weights.values())
    assert weights["127.0.0.1:2"] == weights["127.0.0.1:3"] == 256
    assert 100 * weights["127.0.0.1:1"] / total == pytest.approx(5, abs=0.2)


def test_weight_zero_pools_get_no_split_traffic_and_keep_their_slot() -> None:
    table = RouteTable(3, pools=(pool("v2", 0, 1), pool("v1", 100, 2)), preview="v2")
    want = desired(table, RULES, {"v1": 4})
    by_name = want.by_name()
    assert by_name["shop-v2-1"].split_weight == 0 and by_name["shop-v1-2"].split_weight == 256
    assert want.slots == {"v2": 0, "v1": 4}  # v1 keeps the slot it held
    assert want.maps["servers"] == {"shop-v2-1": "v2", "shop-v1-2": "v1"}


def test_no_pool_with_weight_and_backends_shares_equally() -> None:
    table = RouteTable(1, pools=(pool("v2", 100), pool("v1", 0, 2)))
    assert desired(table, RULES, {}).by_name()["shop-v1-2"].split_weight == 256


def test_sticky_buckets_follow_cumulative_shares_in_table_order() -> None:
    rules = RULES.with_table(RouteTable(1, sticky=Sticky(cookie="zd")))
    assert rules.sticky == Key("cookie", "zd")
    table = RouteTable(2, pools=(pool("v2", 20, 1), pool("v1", 80, 2)), sticky=Sticky("zd"))
    buckets = desired(table, rules, {}).maps["buckets"]
    assert [b for b, s in buckets.items() if s == "zd_s0"] == [str(n) for n in range(20)]


def test_routes_only_to_releases_with_backends() -> None:
    matches = (Match("v2", "yes", header="X-Canary"), Match("v3", "yes", cookie="beta"))
    table = RouteTable(
        1, pools=(pool("v2", 10, 1), pool("v1", 90, 2), pool("v3", 0)), matches=matches
    )
    rules = RULES.with_table(table)
    assert rules.match_keys == (Key("header", "X-Canary"), Key("cookie", "beta"))
    want = desired(table, rules, {})
    assert want.maps["match0"] == {"yes": "zd_s0"} and want.maps["match1"] == {}
    assert map_names(rules) == ["servers", "match0", "match1"]


def test_more_releases_than_slots_is_refused() -> None:
    with pytest.raises(TooManyReleases):
        assign_slots([f"v{n}" for n in range(9)], {})


@pytest.mark.parametrize("log_on", [False, True])
def test_rendered_configuration_is_valid(tmp_path: Path, log_on: bool) -> None:
    try:
        binary = process.find_binary()
    except PermanentDriverError as exc:
        pytest.skip(str(exc))
    rules = Rules(
        "127.0.0.1:8080", "127.0.0.1:8081", 10.0, (Key("header", "X-Canary"),), Key("cookie", "zd")
    )
    files = Files(run=tmp_path, admin_socket=tmp_path / "a.sock")
    table = RouteTable(1, pools=(pool("v2", 10, 1), pool("v1", 90, 2)), preview="v2")
    want = desired(table, rules, {})
    for name in map_names(rules):
        files.map_file(name).write_text("")
    files.log_switch.write_text("on 1\n")
    files.sampling.write_text("")
    files.lua.write_text(MURMUR3_LUA)
    config = render(rules, want, files, drain=5, log_on=log_on)
    files.config.write_text(config)
    assert process.check_config(binary, files.config) is None
    # the log's switch: in maintenance while off; the log rules end the frontends' rules
    assert ("  server on 127.0.0.1:1 disabled" in config) is not log_on
    for frontend in config.split("frontend ")[1:]:
        rules = [ln for ln in frontend.split("\n\n")[0].splitlines() if "http-response" in ln]
        assert rules[-1] == "  http-response set-var(txn.zd_flags) res.hdr(x-zerodown-flags)"


def test_a_missing_or_old_binary_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZERODOWN_HAPROXY", str(tmp_path / "nope"))
    with pytest.raises(PermanentDriverError, match="apt-get install haproxy"):
        process.find_binary()
    old = tmp_path / "haproxy"
    old.write_text("#!/bin/sh\necho 'HAProxy version 2.2.9-2 2021/01/01'\n")
    os.chmod(old, 0o755)
    monkeypatch.setenv("ZERODOWN_HAPROXY", str(old))
    with pytest.raises(PermanentDriverError, match=r"HAProxy 2\.2; zerodown needs 2\.4"):
        process.find_binary()


def test_attach_needs_its_fields_and_refuses_what_needs_a_rule() -> None:
    message = refusal("router:\n  kind: haproxy\n  attach: {admin_socket: /run/h.sock}\n")
    assert message.startswith("zerodown.yaml:5: router.attach.backend: is required"), message
    message = refusal(
        "router:\n  kind: haproxy\n  attach: {admin_socket: /run/h.sock, backend: shop}\n"
        "strategy:\n  canary:\n    steps:\n    - set_weight: 10\n"
        "    - set_header_route: {header: X-Canary, value: 'yes'}\n"
    )
    assert "zerodown.yaml:10: strategy.canary.steps.1: a header route needs a rule" in message


def test_a_header_name_haproxy_cannot_read_is_refused() -> None:
    message = refusal(
        "router: {kind: haproxy}\nstrategy:\n  canary:\n    steps:\n"
        "    - set_header_route: {header: 'X Canary', value: 'yes'}\n"
    )
    assert message.startswith("zerodown.yaml:7: strategy.canary.steps.0: a name HAProxy"), message


@pytest.mark.parametrize(
    ("rules", "looked_up"),
    [
        (RULES, False),  # weights only: nothing sets txn.zd_be in the main frontend
        (Rules("127.0.0.1:8080", None, 10.0, (Key("header", "X-Canary"),)), True),
        (Rules("127.0.0.1:8080", None, 10.0, sticky=Key("cookie", "zd")), True),
    ],
)
def test_the_backend_variable_is_looked_up_only_where_a_rule_sets_it(
    tmp_path: Path, rules: Rules, looked_up: bool
) -> None:
    files = Files(run=tmp_path, admin_socket=tmp_path / "a.sock")
    table = RouteTable(1, pools=(pool("v1", 100, 2),))
    config = render(rules, desired(table, rules, {}), files, drain=5)
    main = config.split("frontend zd_main")[1].split("\nbackend ")[0]
    assert ("use_backend %[var(txn.zd_be)]" in main) is looked_up
    with_preview = Rules("127.0.0.1:8080", "127.0.0.1:8081", 10.0)
    preview = render(with_preview, desired(table, with_preview, {}), files, drain=5)
    assert "use_backend %[var(txn.zd_be)]" in preview.split("frontend zd_preview")[1]
