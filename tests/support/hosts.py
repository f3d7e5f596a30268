"""Hosts for the tests: network namespaces on this machine, each looking like a small server.

Every host gets:
- its own network namespace with an address on a private veth link to this machine (a /24 of
  its own under 10.77.0.0/16, chosen so it does not clash with an address already in use);
- its own sshd (a host key generated here, the client key the lab makes as its only authorized
  key; the controller trusts it through a known_hosts file the lab writes);
- its own mount and pid namespaces (`unshare -m -p --mount-proc`): a private, empty /tmp (so the
  host sees neither the controller's workspace nor another host's files) and its own /proc (so a
  host sees only its own processes, as a separate machine would).

`link_down(name)` takes a host's link down (its processes keep running, nothing reaches them);
`close()` kills each host's sshd, which is pid 1 of its pid namespace (so everything launched on
the host dies with it), and deletes the namespaces and links. Traffic goes only to these
namespaces. Needs root and iproute2; skips (or fails under ZERODOWN_REQUIRE_ALL=1) without.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.services import port_open, require
from support.workspace import Workspace, base_spec

SSHD = "/usr/sbin/sshd"
HOST_TMP = "/tmp"  # each host's private, empty directory (a tmpfs in its mount namespace)


@dataclass
class Host:
    name: str
    address: str  # the host's address on its link
    gateway: str  # this machine's end of the link
    netns: str
    link: str  # this machine's end of the veth pair
    config: Path  # sshd's files (outside /tmp, so the host's own sshd still sees them)
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def ssh(self) -> str:
        return f"root@{self.address}"

    @property
    def subnet(self) -> str:
        return self.gateway.rpartition(".")[0] + ".0/24"


@dataclass
class HostLab:
    hosts: list[Host]
    root: Path
    identity: Path  # the client's private key
    known_hosts: Path
    _tag: str = ""
    closed: bool = field(default=False)

    def spec(self) -> list[dict[str, str]]:
        """The `hosts:` list of a zerodown.yaml."""
        return [{"name": h.name, "ssh": h.ssh} for h in self.hosts]

    def ssh_spec(self, dir: str = f"{HOST_TMP}/zerodown") -> dict[str, str]:
        return {"known_hosts": str(self.known_hosts), "identity": str(self.identity), "dir": dir}

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def link_down(self, name: str) -> None:
        _ip("link", "set", self.host(name).link, "down")

    def link_up(self, name: str) -> None:
        _ip("link", "set", self.host(name).link, "up")

    def run(self, name: str, command: str, timeout: float = 10) -> str:
        """A shell command on the host (in its namespaces, as root), for checks."""
        host = self.host(name)
        assert host.sshd is not None
        init = _child_pid(host.sshd.pid)
        result = subprocess.run(
            ["nsenter", "-t", str(init), "-m", "-p", "-n", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for host in self.hosts:
            if host.sshd is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(_child_pid(host.sshd.pid) or host.sshd.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    host.sshd.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.sshd.wait(timeout=5)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)
            subprocess.run(
                ["ip", "route", "del", "unreachable", host.subnet, "metric", "4000"],
                capture_output=True,
            )
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _child_pid(pid: int) -> int:
    """unshare --fork's child: pid 1 of the host's pid namespace (sshd)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _free_subnets(count: int) -> list[int]:
    """Third octets of 10.77.X.0/24 no interface of this machine uses."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    free = [x for x in range(1, 250) if f" 10.77.{x}." not in used]
    start = os.getpid() % max(1, len(free) - count)
    return free[start : start + count]


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        require("hosts as network namespaces need root (ip netns, unshare)")
    for tool in ("ip", "unshare", "nsenter", "ssh-keygen"):
        if shutil.which(tool) is None:
            require(f"`{tool}` is not installed (iproute2, util-linux, openssh-client)")
    if not os.path.exists(SSHD):
        require("sshd is not installed (Debian openssh-server); `.ci/run` installs it")
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        require("asyncssh is not installed (pip install asyncssh)")


@contextlib.contextmanager
def host_lab(count: int = 3, *, hide: tuple[Path, ...] = ()) -> Iterator[HostLab]:
    """`count` hosts, torn down when the block ends. `hide`: directories of this machine that the
    hosts must not see (a tmpfs is mounted over each; /tmp is private anyway)."""
    check_prerequisites()
    root = Path(tempfile.mkdtemp(prefix="zd-hosts-", dir="/var/tmp"))
    tag = f"zd{os.getpid() % 100000}"
    identity = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)], check=True)
    known_hosts = root / "known_hosts"
    lab = HostLab(hosts=[], root=root, identity=identity, known_hosts=known_hosts, _tag=tag)
    try:
        lines = []
        for index, subnet in enumerate(_free_subnets(count), start=1):
            host = _make_host(f"web{index}", subnet, tag, root, identity)
            lab.hosts.append(host)
            host_key = (host.config / "host_key.pub").read_text().split()
            lines.append(f"{host.address} {host_key[0]} {host_key[1]}\n")
        known_hosts.write_text("".join(lines))
        for host in lab.hosts:
            _start_sshd(host, hide)
        deadline = time.monotonic() + 15
        for host in lab.hosts:
            while not port_open(host.address, 22, timeout=0.3):
                if time.monotonic() > deadline or (host.sshd and host.sshd.poll() is not None):
                    log = (host.config / "sshd.log").read_text(errors="replace")
                    raise RuntimeError(f"sshd of {host.name} did not start: {log[-800:]}")
                time.sleep(0.05)
        yield lab
    finally:
        lab.close()


def _make_host(name: str, subnet: int, tag: str, root: Path, identity: Path) -> Host:
    host = Host(
        name=name,
        address=f"10.77.{subnet}.2",
        gateway=f"10.77.{subnet}.1",
        netns=f"{tag}-{name}",
        link=f"{tag}{name}"[:15],
        config=root / name,
    )
    host.config.mkdir()
    _ip("netns", "add", host.netns)
    _ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
    _ip("addr", "add", f"{host.gateway}/24", "dev", host.link)
    # While the link is down its connected route is gone: without this, traffic to the host
    # would follow the default route off the machine. Unreachable instead, as a dead host is.
    _ip("route", "add", "unreachable", host.subnet, "metric", "4000")
    _ip("link", "set", host.link, "up")
    inside = ("ip", "netns", "exec", host.netns, "ip")
    subprocess.run([*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"], check=True)
    subprocess.run([*inside, "link", "set", "eth0", "up"], check=True)
    subprocess.run([*inside, "link", "set", "lo", "up"], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.config / "host_key")],
        check=True,
    )
    shutil.copy(f"{identity}.pub", host.config / "authorized_keys")
    (host.config / "sshd_config").write_text(
        f"ListenAddress {host.address}\n"
        "Port 22\n"
        f"HostKey {host.config / 'host_key'}\n"
        f"AuthorizedKeysFile {host.config / 'authorized_keys'}\n"
        f"PidFile {host.config / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "UseDNS no\n"
        "MaxSessions 100\n"
        "MaxStartups 100\n"
        "Subsystem sftp internal-sftp\n"
    )
    return host


def _start_sshd(host: Host, hide: tuple[Path, ...]) -> None:
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    mounts = [f"mount -t tmpfs tmpfs {HOST_TMP}"]
    mounts += [
        f"mount -t tmpfs tmpfs '{p}'" for p in hide if p.is_dir() and not p.is_relative_to(HOST_TMP)
    ]
    script = " && ".join([*mounts, f"exec {SSHD} -D -e -f {host.config / 'sshd_config'}"])
    log = open(host.config / "sshd.log", "wb")  # noqa: SIM115 - handed to sshd
    host.sshd = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            host.netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()


def hosts_spec(ws: Workspace, lab: HostLab, **overrides: Any) -> dict[str, Any]:
    """The sample app on the lab's hosts: shipped from the workspace, listening on {host}."""
    spec = base_spec(ws.port, **overrides)
    spec["instances"] = overrides.get("instances", 3)
    spec["run"]["command"] = ["python3", "app.py", "{port}", "{version}", "{host}"]
    spec["hosts"] = lab.spec()
    spec["ssh"] = {**lab.ssh_spec(), "host_grace": "2s", **overrides.get("ssh", {})}
    return spec


def kill_controller(ws: Workspace) -> None:
    """SIGKILL the workspace's controller and router, so that nothing of it goes on calling
    hosts the lab is about to remove (their addresses would then follow the default route)."""
    for pidfile, key in (("controller.json", "pid"), ("router.pid", None)):
        path = ws.root / ".zerodown" / pidfile
        with contextlib.suppress(OSError, ValueError, KeyError):
            text = path.read_text()
            os.kill(int(json.loads(text)[key]) if key else int(text), signal.SIGKILL)
