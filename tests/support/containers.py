"""A real container engine for the tests: Podman's Docker-compatible service on a socket of its
own, and images of the sample app made locally (no registry is reachable from the test machines).

- `podman_engine()` starts `podman system service --time 0 unix://<tmp>/podman.sock` with the
  settings these machines need (docs/containers.md) in a containers.conf of its own (so the tests
  run even where /etc/containers/containers.conf was never written), waits until the socket
  answers, and stops the service at the end (the containers it made are removed by the tests'
  own clean-up). It skips, naming what is missing, when podman or runc is not installed.
- `Engine.image(tag)`: `podman import` of a tiny root file system that holds demo/app.py at
  /app/app.py and empty mount points; the app runs on the host's Python, mounted read-only
  (`VOLUMES`). Every image of a session is in a repository of its own and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import zerodown.demo
from support.services import require

CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
VOLUMES = [f"{d}:{d}:ro" for d in ("/usr", "/lib", "/lib64") if os.path.isdir(d)]
"""The host's Python, read-only, for images that hold only the app."""
APP_COMMAND = ["/usr/bin/python3", "/app/app.py", "{port}", "{version}"]
READY_WITHIN = 30.0
SAMPLE_APP = Path(zerodown.demo.__file__).parent / "app.py"  # read, never imported: it runs


@dataclass
class Engine:
    socket: Path
    env: dict[str, str]  # for `podman` commands: the same containers.conf as the service
    workdir: Path
    repository: str = field(default_factory=lambda: f"localhost/zd-test-{uuid.uuid4().hex[:8]}")
    images: list[str] = field(default_factory=list)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, check=check
        )

    def image(self, tag: str) -> str:
        """`<repository>:<tag>`, made on first use."""
        name = f"{self.repository}:{tag}"
        if name not in self.images:
            self.podman("import", "-q", str(self._rootfs()), name)
            self.images.append(name)
        return name

    def _rootfs(self) -> Path:
        tar = self.workdir / "rootfs.tar"
        if not tar.exists():
            with tarfile.open(tar, "w") as archive:
                for mount_point in ("usr", "lib", "lib64", "tmp", "etc", "proc", "sys", "dev"):
                    info = tarfile.TarInfo(mount_point)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
                archive.add(str(SAMPLE_APP), arcname="app/app.py")
        return tar

    def ours(self) -> list[str]:
        """Ids of every container this session's service holds (for leak checks)."""
        out = self.podman("ps", "-a", "--format", "{{.ID}} {{.Image}}").stdout
        return [line.split()[0] for line in out.splitlines() if self.repository in line]


@contextmanager
def podman_engine() -> Iterator[Engine]:
    for name, package in (("podman", "podman"), ("runc", "runc")):
        if shutil.which(name) is None and not os.path.exists(f"/usr/sbin/{name}"):
            require(f"`{name}` is not installed (container tests); `.ci/run` installs {package}")
    if os.geteuid() != 0:
        require("the container tests run Podman as root (see docs/containers.md)")
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-podman-"))
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    socket = workdir / "podman.sock"
    log = open(workdir / "service.log", "wb")  # noqa: SIM115 - the service's, closed below
    service = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", f"unix://{socket}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = Engine(socket=socket, env=env, workdir=workdir)
    try:
        _wait_until_it_answers(socket, service, workdir)
        yield engine
    finally:
        for image in engine.images:
            engine.podman("rmi", "-f", image, check=False)
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_it_answers(socket: Path, service: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://engine") as client:
        while True:
            if service.poll() is not None:
                log = (workdir / "service.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"`podman system service` exited: {log}")
            try:
                # not before the socket is there: a refused unix connection can leave httpx's
                # socket for the garbage collector (a ResourceWarning, an error in the tests)
                if socket.exists() and client.get("/_ping", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`podman system service` did not answer on {socket}")
            time.sleep(0.05)
