"""A container engine on each test host (tests/support/hosts.py): Podman's Docker-compatible
service started inside the host's namespaces, at the standard /run/podman/podman.sock, with
storage of its own, so each host has only the images the test gives it (as separate machines).

- `ENGINE_DIRS` are hidden from every host (a tmpfs over each in its mount namespace): the
  engine's socket directory, image and container storage, run state and locks (/dev/shm). They
  are made on this machine first if missing, since only an existing directory can be covered.
- `ip netns exec` mounts a sysfs of the host's network namespace over /sys, which hides the
  cgroup hierarchies runc needs: they are mounted again inside the host before the service
  starts (the same hierarchies as this machine's, read from /proc/self/mountinfo).
- `HostEngines.image(host, tag)`: `podman import` of the sample app's root file system
  (support/containers.py) into that host's storage only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.containers import APP_COMMAND, CONTAINERS_CONF, VOLUMES, Engine
from support.hosts import HostLab, _child_pid
from support.services import require
from support.workspace import FAULTS, Workspace, base_spec

ENGINE_DIRS = tuple(
    Path(p)
    for p in ("/run/podman", "/run/containers", "/run/libpod", "/var/lib/containers", "/dev/shm")
)
SOCKET = "/run/podman/podman.sock"
READY_WITHIN = 30.0
PING = (  # the engine's /_ping, from inside the host
    "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('" + SOCKET + "');"
    " s.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100))\" 2>/dev/null"
)


def prepare_engine_dirs() -> tuple[Path, ...]:
    """The directories to hide from the hosts (see the module's doc), made if missing."""
    for name in ("podman", "runc"):
        if not any(os.path.exists(f"{d}/{name}") for d in ("/usr/bin", "/usr/sbin")):
            require(f"`{name}` is not installed (containers on hosts); `.ci/run` installs it")
    for path in ENGINE_DIRS:
        path.mkdir(parents=True, exist_ok=True)
    return ENGINE_DIRS


def _cgroup_mounts() -> list[str]:
    commands = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point, kind, options = fields[4], fields[fields.index("-") + 1], fields[-1]
        if point == "/sys/fs/cgroup":
            commands.append(f"mount -t {kind} -o {options} {kind} /sys/fs/cgroup")
        elif point.startswith("/sys/fs/cgroup/"):
            commands.append(f"mkdir -p {point} && mount -t {kind} -o {options} {kind} {point}")
    return commands


@dataclass
class HostEngines:
    lab: HostLab
    conf: Path
    rootfs: Path
    services: list[subprocess.Popen[bytes]]
    repository: str

    def _enter(self, host: str) -> list[str]:
        init = _child_pid(self.lab.host(host).sshd.pid)  # type: ignore[union-attr]
        return ["nsenter", "-t", str(init), "-m", "-p", "-n"]

    def podman(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._enter(host), "podman", *args],
            env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def image(self, host: str, tag: str) -> str:
        name = f"{self.repository}:{tag}"
        done = self.podman(host, "import", "-q", str(self.rootfs), name)
        assert done.returncode == 0, f"podman import on {host}: {done.stderr}"
        return name

    def releases(self, host: str, *, running: bool = True) -> list[str]:
        """The release of each container on the host (running ones only, or all)."""
        what = '{{index .Labels "zerodown.release"}}'
        out = self.podman(host, "ps", *(() if running else ("-a",)), "--format", what).stdout
        return out.split()


@contextmanager
def host_engines(lab: HostLab) -> Iterator[HostEngines]:
    """A Podman service on each of the lab's hosts. Their files are in the lab's directory (the
    hosts see it; their /tmp is their own)."""
    workdir = lab.root
    engine = Engine(socket=Path(SOCKET), env={}, workdir=workdir)  # image names and root fs
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    engines = HostEngines(
        lab=lab, conf=conf, rootfs=engine._rootfs(), services=[], repository=engine.repository
    )
    script = " && ".join(
        [*_cgroup_mounts(), f"exec podman system service --time 0 unix://{SOCKET}"]
    )
    try:
        for host in lab.hosts:
            log = open(workdir / f"engine-{host.name}.log", "wb")  # noqa: SIM115 - the service's
            engines.services.append(
                subprocess.Popen(
                    [*engines._enter(host.name), "sh", "-c", script],
                    env={**os.environ, "CONTAINERS_CONF": str(conf)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        deadline = time.monotonic() + READY_WITHIN
        for host, service in zip(lab.hosts, engines.services, strict=True):
            while "200 OK" not in lab.run(host.name, PING):
                if service.poll() is not None or time.monotonic() > deadline:
                    log_text = (workdir / f"engine-{host.name}.log").read_text(errors="replace")
                    raise RuntimeError(
                        f"the engine of {host.name} did not start: {log_text[-800:]}"
                    )
                time.sleep(0.1)
        yield engines
    finally:
        for host in lab.hosts:  # containers and their cgroups go before the hosts do
            if not lab.closed and host.sshd is not None:
                engines.podman(host.name, "rm", "-f", "-a", "-t", "0")
        for service in engines.services:
            service.terminate()
            try:
                service.wait(10)
            except subprocess.TimeoutExpired:
                service.kill()


def container_hosts_spec(
    ws: Workspace, lab: HostLab, engines: HostEngines, **overrides: Any
) -> dict[str, Any]:
    """The sample app as containers on the lab's hosts, listening on {host}."""
    made = base_spec(ws.port, **overrides)
    made["instances"] = 3
    made["platform"] = {"kind": "container"}
    made["run"] = {
        "image": f"{engines.repository}:{{version}}",
        "command": [*APP_COMMAND, "{host}"],  # listens on its host's address
        "volumes": VOLUMES,
        "env": {"ZD_APP_FAULTS": json.dumps(FAULTS)},
        "drain": "1s",
        "stop_timeout": "5s",
    }
    made["hosts"] = lab.spec()
    made["ssh"] = {**lab.ssh_spec(), "host_grace": "2s"}
    return made
