"""The host side of the ssh platform: one small program on the standard library only, shipped to
each host and run there as `python3 remote.py SERVICE_DIR`, which serves requests as JSON lines on
its stdin and stdout for as long as the controller's SSH channel lasts.

It is the local platform's process handling, on the host: instances in their own process group
(own session), named by "pid:start ticks" so a recycled pid is never acted on, found again by
the markers in their environment, logging to SERVICE_DIR/logs/<instance>.log. It also receives
releases (`stage`, `commit`): a release directory is staged from the last copy of it (or the
newest other release), the controller sends only the files whose hash differs, and `commit`
swaps it in and prunes old releases.

This file must run on any host's python3 (3.8 and newer): no zerodown imports, and annotations
are never evaluated (`from __future__ import annotations`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from typing import Any

INSTANCE = "ZERODOWN_INSTANCE"
STATE = "ZERODOWN_STATE_DIR"
HOST = "ZERODOWN_HOST"
LOG_TAIL = 8192
KILL_WAIT = 10.0
PORTS = (20000, 32000)  # below Linux's ephemeral range: no outgoing connection takes one

# (pid, ticks) -> Popen: to reap our children and read their exit statuses
children: dict[tuple[int, int], subprocess.Popen[bytes]] = {}
children_lock = threading.Lock()
write_lock = threading.Lock()


def ticks_of(pid: int, zombie: bool = False) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X") and not zombie:
        return None
    return int(fields[19])


def environ_of(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def alive(pid: int, ticks: int) -> bool:
    with children_lock:
        child = children.get((pid, ticks))
    if child is not None:
        return child.poll() is None
    return ticks_of(pid) == ticks


def free_port(address: str, taken: set[int]) -> int:
    import random

    candidates = [p for p in range(*PORTS) if p not in taken]
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            try:
                s.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {address}")


def tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


class Host:
    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(os.path.expanduser(base))
        self.logs = os.path.join(self.base, "logs")
        self.releases = os.path.join(self.base, "releases")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.releases, exist_ok=True)

    def log_path(self, iid: str) -> str:
        if not iid or "/" in iid or iid.startswith("."):
            raise ValueError(f"{iid!r} cannot name a log file")
        return os.path.join(self.logs, iid + ".log")

    # --- processes -----------------------------------------------------------------------

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    def op_launch(self, req: dict[str, Any]) -> dict[str, Any]:
        address, release = req["address"], req["release"]
        port = free_port(address, set(req.get("taken", [])))
        cwd = os.path.join(self.releases, release)
        if not os.path.isdir(cwd):
            return {"error": f"release {release} is not on this host ({cwd})"}

        def fill(text: str) -> str:
            return (
                text.replace("{port}", str(port))
                .replace("{version}", release)
                .replace("{host}", address)
            )

        argv = [fill(a) for a in req["argv"]]
        env = dict(os.environ)
        env.update({k: fill(v) for k, v in req["env"].items()})
        env["PORT"] = str(port)
        log = open(self.log_path(req["instance"]), "ab")  # noqa: SIM115 - handed to the child
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                return {"error": f"cannot start {argv[0]!r}: not found on this host"}
            return {"error": f"cannot start {argv[0]!r}: {exc.strerror or exc}"}
        finally:
            log.close()
        ticks = ticks_of(child.pid, zombie=True)
        if ticks is None:
            return {"error": f"{argv[0]!r} started but vanished before it could be seen"}
        with children_lock:
            children[(child.pid, ticks)] = child
        for _ in range(1000):  # until execve has put the environment in /proc (adopt reads it)
            environ = environ_of(child.pid)
            if (environ and INSTANCE in environ) or child.poll() is not None:
                break
            time.sleep(0.001)
        return {"port": port, "pid": child.pid, "ticks": ticks}

    def op_observe(self, req: dict[str, Any]) -> dict[str, Any]:
        pid, ticks = req["pid"], req["ticks"]
        if alive(pid, ticks):
            return {"running": True}
        with children_lock:
            child = children.pop((pid, ticks), None)
        code = child.returncode if child is not None else None
        if code is None:
            status = "status unknown"
        elif code < 0:
            try:
                status = "killed by " + signal.Signals(-code).name
            except ValueError:
                status = f"status {code}"
        else:
            status = f"status {code}"
        return {"running": False, "status": status, "tail": tail(self.log_path(req["instance"]), 5)}

    def signal_group(self, pid: int, ticks: int, sig: int) -> None:
        if ticks_of(pid) == ticks:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    def gone_within(self, pid: int, ticks: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while alive(pid, ticks):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        with children_lock:
            children.pop((pid, ticks), None)
        return True

    def op_stop(self, req: dict[str, Any]) -> dict[str, Any]:
        pid, ticks, name, grace = req["pid"], req["ticks"], req["signal"], req["grace"]
        if not alive(pid, ticks):
            with children_lock:
                children.pop((pid, ticks), None)
            return {"how": "already gone"}
        self.signal_group(pid, ticks, getattr(signal, name))
        if self.gone_within(pid, ticks, grace):
            return {"how": "exited after " + name}
        self.signal_group(pid, ticks, signal.SIGKILL)
        if self.gone_within(pid, ticks, KILL_WAIT):
            return {"how": f"killed (SIGKILL) {grace:g}s after {name}"}
        return {"how": f"still there {KILL_WAIT:g}s after SIGKILL"}

    def instances(self, state: str, host: str) -> list[tuple[int, int, dict[str, str]]]:
        """This controller's instances on this host: process group leaders with its markers."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            environ = environ_of(pid)
            if not environ or environ.get(STATE) != state or environ.get(HOST) != host:
                continue
            ticks = ticks_of(pid)
            try:
                leads = os.getpgid(pid) == pid
            except OSError:
                leads = False
            if ticks is None or not leads or INSTANCE not in environ or "PORT" not in environ:
                continue
            found.append((pid, ticks, environ))
        return found

    def op_adopt(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "instances": [
                {"instance": env[INSTANCE], "port": int(env["PORT"]), "pid": pid, "ticks": t}
                for pid, t, env in self.instances(req["state"], req["host"])
            ]
        }

    def op_exec(self, req: dict[str, Any]) -> dict[str, Any]:
        pid, ticks = req["pid"], req["ticks"]
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = None
        environ = environ_of(pid)
        if cwd is None or environ is None or ticks_of(pid) != ticks:
            return {"error": "the instance is not running"}
        for marker in (INSTANCE, STATE, HOST):
            environ.pop(marker, None)
        try:
            done = subprocess.run(
                req["argv"],
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=req["limit"],
            )
        except subprocess.TimeoutExpired:
            return {"timeout": True}
        except OSError as exc:
            return {"code": 127, "output": str(exc)[-200:]}
        return {
            "code": done.returncode,
            "output": done.stdout.decode(errors="replace").strip()[-200:],
        }

    def op_logs(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"text": tail(self.log_path(req["instance"]), req["lines"])}

    # --- containers (the container platform on hosts: platforms/container/hosts.py) --------

    def op_port(self, req: dict[str, Any]) -> dict[str, Any]:
        """A free port of this host's address, for a container to listen on."""
        return {"port": free_port(req["address"], set(req.get("taken", [])))}

    def op_engine(self, req: dict[str, Any]) -> dict[str, Any]:
        """This host's container engine socket, found as the docker CLI finds it: DOCKER_HOST
        (as the SSH login sees it), the Docker socket, Podman's, then rootless Podman's."""
        docker_host = os.environ.get("DOCKER_HOST", "")
        if docker_host:
            if not docker_host.startswith("unix://"):
                return {"error": f"DOCKER_HOST={docker_host}: only unix:// sockets are used"}
            candidates = [docker_host[len("unix://") :]]
        else:
            candidates = ["/var/run/docker.sock", "/run/podman/podman.sock"]
            runtime = os.environ.get("XDG_RUNTIME_DIR")
            if runtime:
                candidates.append(os.path.join(runtime, "podman", "podman.sock"))
        for path in candidates:
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    return {"socket": path}
            except OSError:
                continue
        return {
            "error": "no container engine socket: looked at DOCKER_HOST"
            f" ({docker_host or 'unset'}), {', '.join(candidates)}; start Docker or"
            " `podman system service --time 0 unix:///run/podman/podman.sock` there"
        }

    # --- releases ------------------------------------------------------------------------

    def release_dir(self, release: str) -> str:
        if not release or "/" in release or release.startswith("."):
            raise ValueError(f"{release!r} cannot name a release directory")
        return os.path.join(self.releases, release)

    def op_stage(self, req: dict[str, Any]) -> dict[str, Any]:
        """A staging copy of the release to update: its last copy, else the newest release."""
        final = self.release_dir(req["release"])
        stage = os.path.join(self.releases, ".stage-" + req["release"])
        shutil.rmtree(stage, ignore_errors=True)
        seed = final if os.path.isdir(final) else self.newest()
        if seed is not None:
            shutil.copytree(seed, stage, symlinks=True)
        else:
            os.makedirs(stage)
        files = {}
        for root, _dirs, names in os.walk(stage):
            for name in names:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                files[os.path.relpath(path, stage)] = digest.hexdigest()
        return {"stage": stage, "files": files, "seed": os.path.basename(seed) if seed else None}

    def newest(self) -> str | None:
        dirs = [
            os.path.join(self.releases, d)
            for d in os.listdir(self.releases)
            if not d.startswith(".") and os.path.isdir(os.path.join(self.releases, d))
        ]
        return max(dirs, key=os.path.getmtime) if dirs else None

    def op_commit(self, req: dict[str, Any]) -> dict[str, Any]:
        """Delete what the release no longer has, set modes, swap the staged copy in, prune.
        An unchanged release is left where it is (its running instances keep their files)."""
        stage = os.path.join(self.releases, ".stage-" + req["release"])
        final = self.release_dir(req["release"])
        if req.get("unchanged") and os.path.isdir(final):
            shutil.rmtree(stage, ignore_errors=True)
            os.utime(final)
        else:
            for rel in req["delete"]:
                try:
                    os.remove(os.path.join(stage, rel))
                except OSError:
                    pass
            for rel, mode in req["modes"].items():
                os.chmod(os.path.join(stage, rel), mode)
            if os.path.isdir(final):  # kept aside while instances run from it (see prune)
                os.rename(final, os.path.join(self.releases, f".old-{time.time_ns()}"))
            os.rename(stage, final)
            os.utime(final)
        return {"pruned": self.prune(req["keep"], req["state"], req["host"], req["release"])}

    def prune(self, keep: int, state: str, host: str, current: str) -> list[str]:
        """All but the `keep` newest releases, except any a running instance still uses."""
        in_use = set()
        for pid, _t, _env in self.instances(state, host):
            try:
                in_use.add(os.path.realpath(os.readlink(f"/proc/{pid}/cwd")))
            except OSError:
                pass
        names = os.listdir(self.releases)
        releases = sorted(
            (d for d in names if not d.startswith(".")),
            key=lambda d: os.path.getmtime(os.path.join(self.releases, d)),
            reverse=True,
        )
        old = [d for d in names if d.startswith(".old-")]
        pruned = []
        for name in releases[keep:] + old:
            path = os.path.realpath(os.path.join(self.releases, name))
            if name == current or any(p == path or p.startswith(path + "/") for p in in_use):
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not name.startswith("."):
                pruned.append(name)
        return pruned


def serve(host: Host) -> None:
    out = sys.stdout

    def answer(req: dict[str, Any]) -> None:
        try:
            result = getattr(host, "op_" + req["op"])(req)
            reply = {"id": req["id"], "result": result}
        except Exception as exc:
            reply = {"id": req.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        line = json.dumps(reply) + "\n"
        with write_lock:
            out.write(line)
            out.flush()

    out.write(json.dumps({"ready": True, "python": sys.version.split()[0]}) + "\n")
    out.flush()
    for line in sys.stdin:
        if line.strip():
            threading.Thread(target=answer, args=(json.loads(line),), daemon=True).start()


if __name__ == "__main__":
    serve(Host(sys.argv[1]))
