"""`run` fits the platform: run.command for processes, run.image for containers; a field the
chosen platform would ignore is refused at its line, saying what to do."""

from __future__ import annotations

import pytest

from zerodown.core.errors import SpecError
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

CONTAINER = "service: shop\nplatform: {kind: container}\nrun:\n"  # lines 1-3


def refused(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (
            "service: shop\nrun:\n  command: [app]\n  image: shop:v1\n",
            "zerodown.yaml:4: run.image:",
            "is for `platform: {kind: container}`",
        ),
        ("service: shop\nrun: {env: {A: b}}\n", "zerodown.yaml:2: run.command:", "required"),
        (CONTAINER + "  command: [app]\n", "zerodown.yaml:3: run.image:", "required"),
        (
            CONTAINER + "  image: shop:v1\n  network: bridge\n",
            "zerodown.yaml:3: run.port:",
            "with network: bridge, set run.port",
        ),
        (
            CONTAINER + "  image: shop:v1\n  port: 8000\n",
            "zerodown.yaml:5: run.port:",
            "zerodown picks each instance's port",
        ),
        (
            CONTAINER + "  image: shop:v1\n  volumes: [/srv, '/a:/b:rx']\n",
            "zerodown.yaml:5: run.volumes.0:",
            "SOURCE:DEST",
        ),
        (
            CONTAINER + "  image: shop:v1\n  volumes: ['/a:b']\n",
            "zerodown.yaml:5: run.volumes.0:",
            "start it with '/'",
        ),
        (
            CONTAINER + "  image: shop:v1\n  network: overlay\n",
            "zerodown.yaml:5: run.network:",
            "'host' or 'bridge'",
        ),
        (CONTAINER + "  image: 'shop v1'\n", "zerodown.yaml:4: run.image:", "not an image"),
    ],
)
def test_run_fields_that_do_not_fit_the_platform_are_refused(
    text: str, where: str, says: str
) -> None:
    message = refused(text)
    assert message.startswith(where) and says in message, message


def test_a_container_spec_loads_and_survives_json() -> None:
    text = (
        CONTAINER + '  image: "registry.example/shop:{version}"\n  network: bridge\n'
        "  port: 8000\n  volumes: [/srv/shop/uploads:/uploads, 'data:/data:ro']\n"
    )
    spec = parse_model(text, Spec, file="zerodown.yaml")
    assert spec.run.image == "registry.example/shop:{version}" and spec.run.command == []
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec
