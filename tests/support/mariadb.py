"""A MariaDB for the MySQL migration tests: $ZERODOWN_TEST_MYSQL_URL, the local server at
127.0.0.1:3306 (root, no password), or a private `mariadbd` the tests start (Debian's
`mariadb-server`, a datadir under /tmp, a free port) — else skip (fail under
ZERODOWN_REQUIRE_ALL=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from support.services import binary, free_port, port_open, require


def _answers(port: int) -> bool:
    try:
        import pymysql

        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()
        return True
    except Exception:
        return False


@contextmanager
def mariadb_server() -> Iterator[str]:
    url = os.environ.get("ZERODOWN_TEST_MYSQL_URL")
    if url:
        yield url
        return
    try:
        import pymysql  # noqa: F401
    except ImportError:
        require("PyMySQL is not installed (pip install 'zerodown[mysql]')")
    if port_open("127.0.0.1", 3306) and _answers(3306):
        yield "mysql://root@127.0.0.1:3306/"
        return
    server = binary("mariadbd", "MariaDB for the MySQL online schema change tests")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if install is None:
        require("`mariadb-install-db` is not installed; `.ci/run` installs mariadb-server")
    assert install is not None
    datadir = tempfile.mkdtemp(prefix="zerodown-mariadb-")
    port = free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            install,
            "--no-defaults",  # the machine's my.cnf may point at its own datadir and socket
            f"--datadir={datadir}/data",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *user,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    proc = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={datadir}/data",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={datadir}/sock",
            f"--pid-file={datadir}/pid",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start on port {port} (datadir {datadir})")
            time.sleep(0.1)
        yield f"mysql://root@127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(datadir, ignore_errors=True)
