"""Drivers are found by kind, built-in or from a plug-in's entry points (the fake drivers are
installed as one: tests/support), and the spec names only kinds that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerodown import drivers
from zerodown.core.errors import SpecError
from zerodown.spec.load import load_spec

HEAD = "service: shop\nrun: {command: [app]}\n"


def test_a_plug_in_s_drivers_are_listed_beside_the_built_in_ones() -> None:
    assert {"builtin", "fake"} <= set(drivers.routers.kinds())
    assert {"local", "fake"} <= set(drivers.platforms.kinds())
    assert {"sqlite", "fake"} <= set(drivers.stores.kinds())


def test_a_spec_may_name_a_plug_in_s_drivers(tmp_path: Path) -> None:
    path = tmp_path / "zerodown.yaml"
    path.write_text(
        HEAD + "router: {kind: fake}\nplatform: {kind: fake}\nstate: {url: 'fake://'}\n"
    )
    spec = load_spec(path)
    assert drivers.kinds_of(spec) == {
        "router.kind": "fake",
        "platform.kind": "fake",
        "state.url": "fake",
    }


def test_the_defaults_are_the_built_in_drivers(tmp_path: Path) -> None:
    path = tmp_path / "zerodown.yaml"
    path.write_text(HEAD)
    assert drivers.kinds_of(load_spec(path)) == {
        "router.kind": "builtin",
        "platform.kind": "local",
        "state.url": "sqlite",
    }


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("router: {kind: traefik}\n", "3: router.kind", "no router of kind 'traefik'"),
        ("platform:\n  kind: k8s\n", "4: platform.kind", "no platform of kind 'k8s'"),
        ("state: {url: 'mysql://db/x'}\n", "3: state.url", "names no state store"),
        ("state: {url: state.db}\n", "3: state.url", "sqlite:///.zerodown/state.db"),
    ],
)
def test_an_unknown_kind_names_the_line_and_the_kinds_that_exist(
    tmp_path: Path, text: str, where: str, says: str
) -> None:
    path = tmp_path / "zerodown.yaml"
    path.write_text(HEAD + text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert f"zerodown.yaml:{where}" in message and says in message, message
    if "kind" in where:
        assert "builtin" in message or "local" in message
        assert "fake" in message
    else:
        assert "sqlite://" in message
