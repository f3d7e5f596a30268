"""The nginx rendering of route tables (pure), and what kind nginx refuses in a spec."""

from __future__ import annotations

import re

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
    from zerodown.routers.nginx.driver import LOG_FORMAT

    fmt = LOG_FORMAT.format(zd=render.prefix("shop")).strip("'")
    values = {
        "$zd_shop_release": "v2",
        "$status": "503",
        "${request_time}": "0.012",
        "$upstream_http_x_zerodown_flags": "checkout=new",
        "$upstream_addr": "127.0.0.1:9001, 127.0.0.1:9002",
    }
    for name, value in values.items():
        fmt = fmt.replace(name, value)
    line = parse_line(b"<190>Dec  1 15:00:00 zd: " + fmt.encode())
    assert line is not None
    assert (line.release, line.status, line.backend) == ("v2", 503, "127.0.0.1:9002")
    assert line.latency == pytest.approx(0.012)
    assert line.flags == ("flag:checkout=new",)
