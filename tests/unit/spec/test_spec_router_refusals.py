"""A router driver refuses, with file:line, what it cannot do with a spec (drivers.refusals)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from zerodown import drivers
from zerodown.core.errors import SpecError
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

HEAD = "service: shop\nrun: {command: [app]}\n"  # lines 1-2


def test_the_builtin_router_has_nothing_to_attach_to() -> None:
    text = HEAD + "router:\n  listen: 127.0.0.1:8080\n  attach: {admin_socket: /run/h.sock}\n"
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    message = str(caught.value)
    assert message.startswith("zerodown.yaml:5: router.attach: the builtin router"), message


@pytest.fixture
def picky_router() -> Iterator[None]:
    def cannot(spec: Spec) -> Sequence[drivers.Refusal]:
        refusals = [drivers.Refusal("router.listen", "cannot listen there")]
        if spec.strategy.canary is not None:
            refusals.append(drivers.Refusal("strategy.canary.steps.1", "no header routes"))
        return refusals

    drivers.routers.register("picky", drivers.routers.factory("builtin"), validate=cannot)
    yield
    drivers.routers._factories.pop("picky")
    drivers.routers._validators.pop("picky")


def test_a_driver_validator_names_each_field_at_its_line(picky_router: None) -> None:
    text = HEAD + (
        "router: {kind: picky}\n"  # 3
        "strategy:\n"
        "  canary:\n"
        "    steps:\n"
        "    - set_weight: 10\n"  # 7
        "    - set_header_route: {header: X-Canary, value: 'yes'}\n"  # 8
    )
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    assert str(caught.value).splitlines() == [
        "zerodown.yaml:3: router.listen: cannot listen there",
        "zerodown.yaml:8: strategy.canary.steps.1: no header routes",
    ]
