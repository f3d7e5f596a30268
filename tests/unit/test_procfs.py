"""procfs: what /proc says about a process, checked against processes and sockets made here."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from zerodown import procfs


def test_running_is_false_for_a_zombie_and_for_a_reaped_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert procfs.running(os.getpid())
    assert not procfs.running(child.pid)
    child.wait()
    assert not procfs.running(child.pid)


def test_accepted_lists_the_connections_held_on_the_given_ports_only() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert procfs.accepted(os.getpid(), {port}) == set()  # the listener itself is not one
        with socket.create_connection(("127.0.0.1", port)) as client:
            server_side, _ = listener.accept()
            with server_side:
                here = client.getsockname()[1]
                # The client's own socket is held here too, but its local port is not `port`.
                assert procfs.accepted(os.getpid(), {port}) == {(port, here)}
                assert procfs.accepted(os.getpid(), {port + 1}) == set()
        # Gone with the process: nothing, no error.
        assert procfs.accepted(2**22 + 1, {port}) == set()
