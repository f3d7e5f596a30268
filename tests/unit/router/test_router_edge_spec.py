"""The spec side of the router as an edge: router.tls and run.drain's upgraded part."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from zerodown.core.errors import SpecError
from zerodown.paths import Paths
from zerodown.routers.proxy.client import router_command
from zerodown.routers.proxy.driver import BuiltinRouter
from zerodown.spec.model import RunSpec, Spec


def spec(**router: object) -> Spec:
    return Spec.model_validate({"service": "s", "run": {"command": ["x"]}, "router": router})


def test_tls_files_are_relative_to_the_spec_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "site.crt").write_text("cert")
    s = spec(tls={"certificates": [{"cert": "site.crt", "key": "site.key"}]})
    driver = BuiltinRouter(paths=Paths.for_spec(tmp_path / "zerodown.yaml"), spec=s)
    with pytest.raises(SpecError, match=r"site\.key: no such file") as e:
        driver._tls_files()
    assert e.value.field == "router.tls.certificates[0].key"
    (tmp_path / "site.key").write_text("key")
    pairs = driver._tls_files()
    assert pairs == [(str(tmp_path / "site.crt"), str(tmp_path / "site.key"))]
    argv = router_command(
        listen="127.0.0.1:1",
        preview_listen=None,
        admin_socket="a",
        state_file="s",
        tls=pairs,
        redirect_http="127.0.0.1:2",
    )
    assert argv[-6:] == [
        "--tls-cert",
        pairs[0][0],
        "--tls-key",
        pairs[0][1],
        "--redirect-http",
        "127.0.0.1:2",
    ]


def test_tls_needs_a_certificate_and_a_valid_redirect_address() -> None:
    with pytest.raises(ValidationError):
        spec(tls={"certificates": []})
    with pytest.raises(ValidationError, match="not an address"):
        spec(tls={"certificates": [{"cert": "c", "key": "k"}], "redirect_http": "80"})


def test_drain_upgraded_defaults_to_the_drain_time() -> None:
    run = RunSpec.model_validate({"command": ["x"], "drain": "7s"})
    assert (run.drain, run.upgraded_drain) == (7.0, 7.0)
    run = RunSpec.model_validate({"command": ["x"], "drain": {"requests": "5s", "upgraded": "2m"}})
    assert (run.drain, run.upgraded_drain) == (5.0, 120.0)
    with pytest.raises(ValidationError, match="drain has no key 'upgrade'"):
        RunSpec.model_validate({"command": ["x"], "drain": {"upgrade": "2m"}})
