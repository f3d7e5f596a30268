"""`hosts:` and `ssh:` in zerodown.yaml: instances on a few servers reached over SSH.

    hosts:
      - {name: web1, ssh: "root@10.10.0.11"}
      - {name: web2, ssh: "deploy@10.10.0.12", port: 2222}
    ssh:                                   # all optional
      known_hosts: ~/.ssh/known_hosts      # host keys are checked against it, never accepted blindly
      identity: ~/.ssh/id_ed25519          # else the SSH agent and the usual ~/.ssh/id_* keys
      dir: zerodown                        # on each host, relative to the user's home
      keep_releases: 3                     # release directories kept on each host

With `hosts:` the platform is `ssh` unless the spec names one: instances are spread evenly over the
hosts and listen on their host's address (`{host}` in run.command and run.env, like `{port}`).
`platform: {kind: container}` with `hosts:` runs containers there, through each host's engine.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator

from zerodown.spec.types import Duration, StrictModel, shorten

HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:]{2,39}\]?$")
MAX_HOSTS = 64
HOSTED_KINDS = ("ssh", "container")  # the platforms that run instances on hosts:


def split_ssh(value: str) -> tuple[str, str]:
    """ "user@address" → (user, address)."""
    user, _, address = value.rpartition("@")
    return user, address.strip("[]")


class HostSpec(StrictModel):
    name: str = Field(pattern=HOST_NAME.pattern, description="lower-case name, e.g. web1")
    ssh: str = Field(description='"user@address" to log in as, e.g. "root@10.10.0.11"')
    port: Annotated[int, Field(ge=1, le=65535)] = 22

    @field_validator("ssh")
    @classmethod
    def _user_at_address(cls, value: str) -> str:
        user, address = split_ssh(value)
        if not user or not _USER.match(user) or not _ADDRESS.match(address):
            raise ValueError(
                f'{shorten(value)} is not user@address; write it like "root@10.0.0.11"'
            )
        return value

    @property
    def user(self) -> str:
        return split_ssh(self.ssh)[0]

    @property
    def address(self) -> str:
        """The address SSH connects to, and where the host's instances listen."""
        return split_ssh(self.ssh)[1]


class SshSpec(StrictModel):
    known_hosts: str = Field(
        "~/.ssh/known_hosts", description="host keys are checked against this file"
    )
    identity: str | None = Field(
        None, description="private key file; unset: the SSH agent and ~/.ssh/id_* keys"
    )
    dir: str = Field("zerodown", description="on each host; relative to the login's home")
    keep_releases: int = Field(3, ge=1, le=100, description="release directories kept per host")
    connect_timeout: Duration = Field(10.0, description="for each SSH connection")
    host_grace: Duration = Field(
        10.0, description="a host not answering this long has its instances replaced elsewhere"
    )


def check_hosts(hosts: list[HostSpec]) -> None:
    """Names and addresses are each used once."""
    for what, values in (
        ("name", [h.name for h in hosts]),
        ("address", [f"{h.address}:{h.port}" for h in hosts]),
    ):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"each host needs its own {what}: {', '.join(twice)} given twice")


def default_platform(data: Any) -> Any:
    """With `hosts:` and no platform kind named, the platform is ssh."""
    if isinstance(data, dict) and data.get("hosts"):
        platform = data.get("platform")
        if platform is None:
            return {**data, "platform": {"kind": "ssh"}}
        if isinstance(platform, dict) and "kind" not in platform:
            return {**data, "platform": {**platform, "kind": "ssh"}}
    return data


def check_platform(kind: str, hosts: list[HostSpec]) -> None:
    if kind == "ssh" and not hosts:
        raise ValueError("platform ssh needs hosts: a list of {name, ssh: user@address}")
    if hosts and kind not in HOSTED_KINDS:
        raise ValueError(
            f"platform {kind} does not run instances on hosts: remove hosts:, or set"
            " platform.kind to ssh (processes; the default with hosts:) or container"
            " (containers, each host pulling the image)"
        )
