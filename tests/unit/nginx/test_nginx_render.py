"""The nginx rendering of route tables (pure), and what kind nginx refuses in a spec."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from zerodown.core.routes import Backend, Match, Pool, RouteTable, Sticky
from zerodown.routers.nginx import render
from zerodown.routers.nginx.validate import validate
from zerodown.spec.model import Spec

SITE = render.Site(service="shop", listen="127.0.0.1:8080", preview_listen="127.0.0.1:8081")


def pool(release: str, weight: int, *ports: int) -> Pool:
    return Pool(release, weight, tuple(Backend(f"127.0.0.1:{p}", f"{release}-{p}") for p in ports))


def test_split_weights_give_each_pool_its_share_whatever_its_size() -> None:
    pools = [(pool("v2", 5, 1, 2), 5), (pool("v1", 95, 3, 4, 5), 95)]
    weights = dict(render.split_weights(pools))
    v2 = sum(weights[f"127.0.0.1:{p}"] for p in (1, 2))
    v1 = sum(weights[f"127.0.0.1:{p}"] for p in (3, 4, 5))
    assert v2 * 95 == v1 * 5
    assert weights["127.0.0.1:1"] == weights["127.0.0.1:2"]


def test_sticky_parts_are_cumulative_shares_in_table_order() -> None:
    pools = [(pool("v3", 1, 1), 1), (pool("v2", 1, 2), 1), (pool("v1", 1, 3), 1)]
    assert render.sticky_parts(pools) == [("v3", 3333), ("v2", 3334), ("v1", 3333)]


def test_a_pool_with_weight_but_no_backend_gives_way() -> None:
    table = RouteTable(1, (pool("v2", 50), pool("v1", 50, 1)))
    text = render.routes_config(table, SITE)
    assert "zd_shop_split" not in text  # one eligible pool: no split
    assert "proxy_pass http://zd_shop_r0;" in text  # no rule: straight to v1's upstream


def test_no_backend_at_all_is_a_503() -> None:
    text = render.routes_config(RouteTable(1), SITE)
    assert "return 503;" in text and "proxy_pass" not in text
    assert "upstream zd_" not in text


def test_matches_chain_in_order_and_values_are_exact_regexes() -> None:
    table = RouteTable(
        3,
        (pool("v2", 10, 2), pool("v1", 90, 1)),
        matches=(Match("v2", 'a.b"c', header="X-Canary"), Match("v1", "x", cookie="beta")),
        sticky=Sticky(cookie="zd_bucket"),
        preview="v2",
    )
    text = render.routes_config(table, SITE)
    assert 'map $http_x_canary $zd_shop_m0 {\n    "~^a\\\\.b\\"c$" zd_shop_r0;' in text
    assert re.search(r'map \$zd_shop_m0 \$zd_shop_route \{\n    "" \$zd_shop_route1;', text)
    assert re.search(r'map \$zd_shop_m1 \$zd_shop_route1 \{\n    "" \$zd_shop_bucket;', text)
    assert 'split_clients "$zd_shop_key" $zd_shop_bucket {\n    10.00% zd_shop_r0;' in text
    assert "add_header Set-Cookie $zd_shop_set_cookie always;" in text
    assert "proxy_pass http://zd_shop_preview;" in text
    assert "server 127.0.0.1:1 backup;" in text  # v2's upstream falls back on v1's backend


def test_what_nginx_cannot_express_is_refused() -> None:
    with pytest.raises(render.Unexpressible, match="header names"):
        render.check(RouteTable(1, matches=(Match("v2", "x", header="X_Under"),)))
    with pytest.raises(render.Unexpressible, match="control characters"):
        render.quote("a\nb")


def spec(**router: object) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["true"]},
            "router": {"kind": "nginx", **router},
            "strategy": {
                "canary": {
                    "steps": [{"set_header_route": {"header": "X_Canary", "value": "y"}}],
                    "sticky": {"cookie": "bad cookie"},
                }
            },
        }
    )


def test_spec_refusals_name_the_field() -> None:
    fields = {r.field for r in validate(spec(admin_listen="127.0.0.1:9000"))} - {"router.kind"}
    assert fields == {"router.admin_listen", "strategy.canary.steps.0", "strategy.canary.sticky"}
    attached = {r.field: r.message for r in validate(spec(attach={"backend": "x"}))}
    assert "nginx attaches by {config, reload}" in attached["router.attach.backend"]
    assert "[nginx, -s, reload]" in attached["router.attach.reload"]


def test_the_log_format_gives_lines_the_collector_reads() -> None:
    from zerodown.routers.accesslog import parse_line

    fmt = render.log_format(render.prefix("shop"), "$zd_shop_weight").split("'")[1]
    values = {
        "$zd_shop_weight": "40",
        "${zd_shop_release}": "v2",
        "$status": "503",
        "${request_time}": "0.012",
        "$upstream_http_x_zerodown_flags": "checkout=new",
        "$upstream_addr": "127.0.0.1:9001, 127.0.0.1:9002",
    }
    for name, value in values.items():
        fmt = fmt.replace(name, value)
    line = parse_line(fmt.encode())
    assert line is not None
    assert (line.release, line.status, line.backend, line.weight) == (
        "v2",
        503,
        "127.0.0.1:9002",
        40,
    )
    assert line.latency == pytest.approx(0.012)
    assert line.flags == ("flag:checkout=new",)


def test_a_sampled_release_logs_exactly_one_request_in_its_weight() -> None:
    """The levels' shares (hundredths of a percent) make level >= i exactly 1 in
    SAMPLING_STEPS[i]; a release at a weight logs those levels at that weight and leaves the
    others out (0); other releases and requests with no backend: every one, weight 1."""
    site = render.Site(
        service="shop", listen="127.0.0.1:8080", log_file="/l", sampling=(("v1", 40), ("v2", 2))
    )
    text = render.routes_config(RouteTable(1, (pool("v1", 90, 1), pool("v2", 10, 2))), site)
    split = text.split('split_clients "${connection}.${connection_requests}" $zd_shop_level {')[1]
    parts = re.findall(r"^    ([\d.]+)% (\d+);$", split.split("}")[0], re.M)
    hundredths = [round(float(share) * 100) for share, _ in parts]
    assert [int(level) for _, level in parts] == list(range(len(render.SAMPLING_STEPS) - 1))
    for i, step in enumerate(render.SAMPLING_STEPS):  # the rest (`*`) is the last level
        assert 10000 - sum(hundredths[:i]) == 10000 // step
    weights = dict(re.findall(r'^    "([^"]+)" (\d+);$', text.split("$zd_shop_weight {")[1], re.M))
    assert weights["v1:4"] == "0" and weights["v1:5"] == "40" and weights["v1:12"] == "40"
    assert weights["v2:0"] == "0" and weights["v2:1"] == "2"
    assert "default 1;" in text.split("$zd_shop_weight {")[1].split("}")[0]
    assert 'access_log "/l" zd_shop_log buffer=64k flush=250ms if=$zd_shop_weight;' in text
    assert render.read_log_state(text) == (True, {"v1": 40, "v2": 2})
    with pytest.raises(ValueError):
        render.routes_config(
            RouteTable(1, (pool("v1", 1, 1),)), replace(site, sampling=(("v1", 3),))
        )


def test_the_first_line_says_what_the_log_does() -> None:
    table = RouteTable(1, (pool("v1", 1, 1),))
    off = render.routes_config(table, SITE)
    assert render.read_log_state(off) == (False, {})
    every = render.routes_config(table, replace(SITE, log_file="/l"))
    assert render.read_log_state(every) == (True, {})
    assert "if=" not in every and "split_clients" not in every
    assert render.read_log_state("# zerodown: service shop\n") is None  # an older file
