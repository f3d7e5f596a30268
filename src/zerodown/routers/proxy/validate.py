"""Check a route table sent to the admin API before the router accepts it.

Every problem is reported with the JSON path of the field to fix, e.g.
`pools[1].backends[0].address: expected "host:port", got "localhost"`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from zerodown.core.routes import RouteTable

# RFC 9110 token characters: what a header or cookie name may contain.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class TableError(ValueError):
    """The route table is invalid; the message names the field."""


def parse_address(address: str) -> tuple[str, int]:
    """ "127.0.0.1:9001" or "[::1]:9001" → (host, port); ValueError naming the problem."""
    host, sep, port_s = address.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise ValueError(f'expected "host:port", got {address!r}')
    port = int(port_s)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _str(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TableError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _token(value: Any, where: str) -> str | None:
    s = _str(value, where, optional=True)
    if s is not None and not _TOKEN.match(s):
        raise TableError(f"{where}: {s!r} is not a valid header/cookie name")
    return s


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TableError(f"{where}: expected an integer >= 0, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TableError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TableError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def check_table(data: Any) -> RouteTable:
    """Validate decoded JSON and build the RouteTable; TableError names the bad field."""
    data = _obj(data, "table")
    if "generation" not in data:
        raise TableError("generation: missing (an integer >= 0 that grows with every change)")
    _int(data["generation"], "generation")
    releases: set[str] = set()
    for i, p in enumerate(_list(data.get("pools"), "pools")):
        at = f"pools[{i}]"
        p = _obj(p, at)
        release = _str(p.get("release"), f"{at}.release")
        if release in releases:
            raise TableError(f"{at}.release: {release!r} appears in two pools")
        releases.add(str(release))
        if "weight" not in p:
            raise TableError(f"{at}.weight: missing (an integer >= 0)")
        _int(p["weight"], f"{at}.weight")
        for j, b in enumerate(_list(p.get("backends"), f"{at}.backends")):
            bat = f"{at}.backends[{j}]"
            b = _obj(b, bat)
            address = _str(b.get("address"), f"{bat}.address")
            try:
                parse_address(str(address))
            except ValueError as e:
                raise TableError(f"{bat}.address: {e}") from None
            _str(b.get("instance"), f"{bat}.instance")
    for i, m in enumerate(_list(data.get("matches"), "matches")):
        at = f"matches[{i}]"
        m = _obj(m, at)
        _str(m.get("release"), f"{at}.release")
        if not isinstance(m.get("value"), str):
            raise TableError(f"{at}.value: expected a string, got {m.get('value')!r}")
        header = _token(m.get("header"), f"{at}.header")
        cookie = _token(m.get("cookie"), f"{at}.cookie")
        if (header is None) == (cookie is None):
            raise TableError(f"{at}: set exactly one of `header` or `cookie`")
    sticky = data.get("sticky")
    if sticky:
        sticky = _obj(sticky, "sticky")
        header = _token(sticky.get("header"), "sticky.header")
        cookie = _token(sticky.get("cookie"), "sticky.cookie")
        if header is None and cookie is None:
            raise TableError("sticky: set `cookie`, `header` or both (or make sticky null)")
    _str(data.get("preview"), "preview", optional=True)
    return RouteTable.from_json(data)


def parse_table(body: bytes) -> RouteTable:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise TableError(f"body is not JSON: {e}") from None
    return check_table(data)
