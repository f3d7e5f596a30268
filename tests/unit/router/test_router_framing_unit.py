"""The request-head rules of the router (framing.py), a response's transfer codings, and the
router's command line for them."""

from __future__ import annotations

import contextlib
import io

import pytest

from zerodown.routers.proxy.__main__ import parse_args
from zerodown.routers.proxy.client import router_command
from zerodown.routers.proxy.framing import (
    Refused,
    content_length,
    is_chunked,
    lookalike,
    origin_form,
    response_codings,
    valid_host,
)


def status(call: object, *args: object, **kw: object) -> int:
    with pytest.raises(Refused) as e:
        call(*args, **kw)  # type: ignore[operator]
    return e.value.status


def test_response_codings() -> None:
    assert response_codings(b"gzip") == (b"gzip", False)  # runs until the backend closes
    assert response_codings(b"Gzip , chunked") == (b"gzip", True)
    assert response_codings(b"gzip,,br,chunked") == (b"gzip, br", True)
    assert response_codings(b"identity") == (b"", False)
    for bad in (b"", b" , ", b"chunked, chunked", b"chunked, gzip"):
        assert status(response_codings, bad) == 502


def test_content_length() -> None:
    assert content_length(b"0") == 0
    assert content_length(b"003 ") == 3
    for bad in (b"", b"+3", b"-3", b"0x3", b"3 3", b"3,3", b"\xd9\xa3", b"9" * 19):
        assert status(content_length, bad) == 400, bad


def test_transfer_encoding() -> None:
    assert is_chunked(b"chunked", http11=True, has_length=False)
    assert is_chunked(b" Chunked ,", http11=True, has_length=False)
    assert status(is_chunked, b"chunked", http11=True, has_length=True) == 400
    assert status(is_chunked, b"chunked", http11=False, has_length=False) == 400
    for value, code in [
        (b"gzip, chunked", 501),
        (b"gzip,chunked", 501),
        (b"chunked, gzip", 400),
        (b"chunked, chunked", 400),
        (b"identity", 400),
        (b",", 400),
    ]:
        assert status(is_chunked, value, http11=True, has_length=False) == code, value


def test_host_and_lookalikes() -> None:
    for ok in (b"h", b"example.com:8080", b"[::1]:80", b"", b"xn--bcher-kva.example"):
        assert valid_host(ok), ok
    for bad in (b"a b", b"a,b", b"a/b", b"a@b", b"a\\b", b"caf\xe9"):
        assert not valid_host(bad), bad
    assert lookalike(b"content_length") and lookalike(b"x_forwarded_for")
    assert not lookalike(b"x_custom") and not lookalike(b"content-length")


def test_absolute_form_becomes_origin_form() -> None:
    assert origin_form(b"GET", b"http://h/p?q", b"h") == (b"/p?q", b"h")
    assert origin_form(b"GET", b"HTTP://H:80?q", b"h") == (b"/?q", b"H:80")
    assert origin_form(b"GET", b"https://h:443/", b"h") == (b"/", b"h:443")
    assert origin_form(b"GET", b"http://h/p", None) == (b"/p", b"h")
    assert origin_form(b"OPTIONS", b"*", b"h") == (b"*", b"h")
    for method, url in [
        (b"GET", b"http://evil/p"),
        (b"GET", b"http://u@h/p"),
        (b"GET", b"http:///p"),
        (b"GET", b"ftp://h/p"),
        (b"GET", b"*"),
        (b"GET", b"p"),
    ]:
        assert status(origin_form, method, url, b"h") == 400, url


def test_header_timeout_on_the_command_line() -> None:
    argv = router_command(
        listen="127.0.0.1:1", preview_listen=None, admin_socket="a", state_file="s"
    )
    assert "--header-timeout" not in argv
    argv = router_command(
        listen="127.0.0.1:1",
        preview_listen=None,
        admin_socket="a",
        state_file="s",
        header_timeout=2.5,
    )
    assert parse_args(argv[3:]).header_timeout == 2.5
    assert parse_args(["--admin-socket", "a", "--state-file", "s"]).header_timeout == 10.0
    for bad in ("0", "-1", "nan", "inf"):
        err = io.StringIO()
        with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(err):
            parse_args(["--admin-socket", "a", "--state-file", "s", "--header-timeout", bad])
        assert e.value.code == 2
        assert "--header-timeout must be more than 0" in err.getvalue()
