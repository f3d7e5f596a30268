"""Restarting the router without refusing or failing a request: the successor takes the
listening sockets over the `.handover` unix socket (SCM_RIGHTS), the old router finishes what it
has and exits."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from router_kit import BackendProc, RouterProc, start_router, table, wait_for

from zerodown.loadgen import LoadGenerator
from zerodown.routers.proxy.client import router_command
from zerodown.routers.proxy.handover import handover_path, request_sockets


def take_over(old: RouterProc, log: Path) -> subprocess.Popen[bytes]:
    argv = router_command(
        listen=f"127.0.0.1:{old.port}",
        preview_listen=f"127.0.0.1:{old.preview_port}",
        admin_socket=str(old.admin_socket),
        state_file=str(old.state_file),
    )
    with open(log, "wb") as out:
        return subprocess.Popen([*argv, "--take-over"], stdout=out, stderr=subprocess.STDOUT)


def healthz(router: RouterProc) -> dict[str, object]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(router.admin_socket))) as c:
        return dict(c.get("http://router/healthz").json())


@pytest.mark.slow
def test_restart_under_load_fails_nothing(
    tmp_path: Path, backend_a: BackendProc, backend_b: BackendProc
) -> None:
    router = start_router(tmp_path)
    successors: list[subprocess.Popen[bytes]] = []
    try:
        router.apply(table(3, ("a", 1, [backend_a]), ("b", 1, [backend_b])))
        with LoadGenerator(router.url, rate=300, max_seconds=30) as load:
            time.sleep(0.7)
            for n in range(2):  # twice: a router that took over hands over again
                old_pid = healthz(router)["pid"]
                new = take_over(router, tmp_path / f"successor-{n}.log")
                successors.append(new)
                wait_for(lambda p=new: healthz(router)["pid"] == p.pid, "the successor's admin API")
                wait_for(
                    lambda pid=old_pid: (
                        not Path(f"/proc/{pid}").exists()
                        or b"Z" in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
                    ),
                    "the old router to exit",
                )
                time.sleep(0.5)
        assert router.proc.wait(5) == 0  # the first one exited by itself, cleanly
        report = load.report
        assert report.total >= 600
        assert [(s.status, s.error) for s in report.failed] == []
        # The table came along, changes go to the new router, the sockets are still there.
        assert healthz(router)["generation"] == 3
        router.close_admin()
        router.apply(table(4, ("a", 1, [backend_a])))
        assert healthz(router)["generation"] == 4
        assert handover_path(router.admin_socket).exists()
        assert httpx.get(router.url + "/").status_code == 200
    finally:
        for p in successors:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        router.stop(signal.SIGKILL)


def test_give_hands_out_copies_and_a_failed_successor_changes_nothing(
    router: RouterProc, backend_a: BackendProc, tmp_path: Path
) -> None:
    router.apply(table(1, ("a", 1, [backend_a])))
    conn, sockets, meta = request_sockets(handover_path(router.admin_socket), b"give")
    with conn:
        assert set(sockets) == {"listen", "preview", "admin", "handover"}
        assert meta["pid"] == router.proc.pid
        assert sockets["listen"].getsockname() == ("127.0.0.1", router.port)
        for s in sockets.values():
            s.close()
    assert httpx.get(router.url + "/").status_code == 200
    assert healthz(router)["handed_over"] is False

    # A successor that cannot start leaves the old router serving.
    router.state_file.write_text("{not json")  # the successor cannot load the table
    new = take_over(router, tmp_path / "successor.log")
    assert new.wait(10) == 2
    assert httpx.get(router.url + "/").status_code == 200
    assert healthz(router)["pid"] == router.proc.pid
    router.apply(table(2, ("a", 1, [backend_a])))  # the old router still takes changes
