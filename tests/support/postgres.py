"""PostgreSQL fixtures: the machine's server on 5432 when it answers, else a private one.

Import the fixtures into a test module (``from support.postgres import postgres_dsn,
pg_schema``). Every test gets a fresh schema (:func:`pg_schema`) or database
(:func:`pg_database`), dropped afterwards, so tests can share one server.

Private servers are started with ``initdb``/``pg_ctl`` from ``PATH`` in a temporary
directory; PostgreSQL refuses to run as root, so under root they run as the ``postgres``
user (the directory is handed to it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

LOCAL_PORT = 5432
SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that drop root for the server's own user."""
    if os.geteuid() != 0:
        return {}
    return {"user": SUPERUSER, "group": pwd.getpwnam(SUPERUSER).pw_gid}


class PostgresServer:
    """A private server on a free port; ``password`` switches auth to scram-sha-256."""

    def __init__(self, password: str | None = None) -> None:
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not on PATH: install PostgreSQL (apt postgresql)")
        self.port = free_port()
        self.password = password
        # Not pytest's tmp_path: its parents are private to root, the server user needs in.
        self.dir = Path(tempfile.mkdtemp(prefix="statesync-pg-"))
        self._init()
        self._ctl("start", "-w", "-l", str(self.dir / "log"), "-o", self._options())

    def _init(self) -> None:
        auth = ["--auth=trust"]
        if self.password is not None:
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password + "\n")
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        if os.geteuid() == 0:
            shutil.chown(self.dir, SUPERUSER, SUPERUSER)
            for path in self.dir.iterdir():
                shutil.chown(path, SUPERUSER, SUPERUSER)
        self._tool("initdb", "-D", str(self.dir / "data"), "-U", SUPERUSER, "-E", "UTF8", *auth)

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )

    def _tool(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=120, **_run_as())

    def _ctl(self, *args: str) -> None:
        self._tool("pg_ctl", "-D", str(self.dir / "data"), *args)

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{SUPERUSER}:{password}" if password is not None else SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", "-w")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A superuser DSN: the server on 5432 (database ``test``) when it answers."""
    for database in ("test", "postgres"):
        dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{LOCAL_PORT}/{database}"
        if answers(dsn):
            yield dsn
            return
    server = PostgresServer()
    yield server.dsn()
    server.stop()


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name private to one test (created by the destination, dropped here)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a fresh database private to one test (dropped afterwards)."""
    name = f"statesync_{uuid.uuid4().hex[:16]}"
    ident = sql.Identifier(name)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    yield postgres_dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture
def postgres_server() -> Iterator[Callable[..., PostgresServer]]:
    """Factory for private servers (password auth, restarts)."""
    servers: list[PostgresServer] = []

    def make(password: str | None = None) -> PostgresServer:
        server = PostgresServer(password)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
