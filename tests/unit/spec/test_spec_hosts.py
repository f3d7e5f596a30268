"""`hosts:` and `ssh:` in zerodown.yaml (issue 14): the platform follows, mistakes name their line."""

from __future__ import annotations

import pytest

from zerodown.core.errors import SpecError
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

BASE = 'service: shop\nrun: {command: [python3, app.py, "{port}", "{version}", "{host}"]}\n'


def parse(extra: str) -> Spec:
    return parse_model(BASE + extra, Spec, file="zerodown.yaml")


def test_hosts_make_the_platform_ssh() -> None:
    spec = parse(
        'hosts:\n  - {name: web1, ssh: "root@10.0.0.1"}\n  - {name: web2, ssh: "deploy@web2.lan", port: 2222}\n'
    )
    assert spec.platform.kind == "ssh"
    assert [(h.name, h.user, h.address, h.port) for h in spec.hosts] == [
        ("web1", "root", "10.0.0.1", 22),
        ("web2", "deploy", "web2.lan", 2222),
    ]
    assert spec.ssh.keep_releases == 3 and spec.ssh.host_grace == 10.0
    assert parse("").platform.kind == "local"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('hosts:\n  - {name: web1, ssh: "10.0.0.1"}\n', "zerodown.yaml:4: hosts.0.ssh"),
        (
            'hosts:\n  - {name: web1, ssh: "root@a"}\n  - {name: web1, ssh: "root@b"}\n',
            "web1 given twice",
        ),
        ('hosts:\n  - {name: web1, ssh: "root@a", sudo: true}\n', "sudo"),
        ('platform: {kind: local}\nhosts:\n  - {name: web1, ssh: "root@a"}\n', "platform local"),
        ("platform: {kind: ssh}\n", "platform ssh needs hosts"),
    ],
)
def test_host_mistakes_are_named(extra: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(extra)
    assert expected in str(caught.value)


HOSTS = 'hosts:\n  - {name: a, ssh: "r@a"}\n'


def test_an_image_on_hosts_needs_platform_container() -> None:
    text = 'service: shop\nrun: {command: [app], image: "shop:1"}\n' + HOSTS
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    message = str(caught.value)
    assert "run.image is for `platform: {kind: container}`; the ssh platform" in message
    assert "containers on hosts: platform: {kind: container}" in message


def test_containers_on_hosts() -> None:
    text = (
        "service: shop\nplatform: {kind: container}\n"
        'run: {image: "shop:{version}", volumes: ["/srv/up:/up", "data:/data"]}\n' + HOSTS
    )
    spec = parse_model(text, Spec, file="zerodown.yaml")
    assert spec.platform.kind == "container" and [h.name for h in spec.hosts] == ["a"]


@pytest.mark.parametrize(
    ("platform", "volume", "expected"),
    [
        (
            "container",
            "./up:/up",
            "zerodown.yaml:3: run.volumes.0: './up:/up': with hosts:, SOURCE",
        ),
        ("local", "/up:/up", "platform local does not run instances on hosts"),
    ],
)
def test_container_on_hosts_mistakes_are_named(platform: str, volume: str, expected: str) -> None:
    text = (
        f"service: shop\nplatform: {{kind: {platform}}}\n"
        f'run: {{image: "shop:1", command: [app], volumes: ["{volume}"]}}\n' + HOSTS
    )
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    assert expected in str(caught.value)
