from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="module")
def mig_db(postgres_url: str) -> Iterator[str]:
    """A fresh database for one test module, dropped afterwards."""
    name = f"zd_mig_{secrets.token_hex(4)}"
    with _admin(postgres_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(postgres_url, dbname=name)
    finally:
        with _admin(postgres_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    from support.mariadb import mariadb_server

    with mariadb_server() as url:
        yield url


@pytest.fixture(scope="module")
def mysql_db(mysql_server_url: str) -> Iterator[str]:
    """A fresh MariaDB/MySQL database for one test module, dropped afterwards."""
    import pymysql

    from zerodown.migrations.mysql.api import connect_args

    name = f"zd_mig_{secrets.token_hex(4)}"
    args = connect_args(mysql_server_url + "x")
    args.pop("database")
    with pymysql.connect(**args, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield mysql_server_url + name
    finally:
        with pymysql.connect(**args, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
