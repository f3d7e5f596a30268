"""The demo app as a process: starts on its port, finishes in-flight requests on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import zerodown.demo.authapp as authapp
from support.services import free_port


@pytest.mark.slow  # a second or more: the full suite runs it
def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SESSIONS": "sqlite", "SESSION_DB": str(tmp_path / "s.db")}
    with (tmp_path / "app.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, authapp.__file__, str(port), "v9"], env=env, stdout=log, stderr=log
        )
        try:
            with httpx.Client(timeout=10) as client:
                deadline = time.monotonic() + 20
                while True:
                    assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                    try:
                        if client.get(f"{url}/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                results: list[int] = []
                slow = threading.Thread(
                    target=lambda: results.append(
                        client.get(f"{url}/work", params={"ms": 1500}).status_code
                    )
                )
                slow.start()
                time.sleep(0.5)  # the request is in flight
                proc.send_signal(signal.SIGTERM)
                slow.join(20)
                assert results == [200]
            assert proc.wait(20) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, authapp.__file__], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and "usage: python authapp.py PORT VERSION" in out.stderr
