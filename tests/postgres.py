"""A real PostgreSQL server for tests: Debian's (``postgresql`` package, installed by
scripts/setup), started on a free port of 127.0.0.1 with its socket and data in a temp dir,
trust auth, ``fsync`` off. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user. ``database(server)`` makes a fresh database on it, dropped after."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

_databases = itertools.count()
SETUP_HINT = "run scripts/setup, which installs Debian's postgresql package"


@dataclass
class PostgresServer:
    port: int
    base: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )


def _pg_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail(
            f"PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) not found: {SETUP_HINT}"
        )
    return found[-1].parent


def _as_owner(*cmd: str | Path) -> list[str]:
    """The command, run as ``postgres`` when we are root (PostgreSQL will not run as root)."""
    args = [str(c) for c in cmd]
    if os.geteuid() != 0:
        return args
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    return ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(args)]


def _run(*cmd: str | Path) -> None:
    proc = subprocess.run(_as_owner(*cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{Path(str(cmd[0])).name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own, stopped and removed at the end."""
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="agentcell-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(base, "postgres", "postgres")
        except LookupError:
            pytest.fail(f"no 'postgres' system user to run the server as: {SETUP_HINT}")
    data, log = base / "data", base / "server.log"
    port = _free_port()
    try:
        initdb_args = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        _run(bin_dir / "initdb", "-D", data, *initdb_args)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            _run(
                bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start"
            )
        except pytest.fail.Exception:
            server_log = log.read_text() if log.exists() else "(no log)"
            pytest.fail(f"PostgreSQL did not start; its log:\n{server_log}")
        yield PostgresServer(port=port, base=base)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def database(server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on ``server``, dropped at the end."""
    name = f"agentcell_test_{os.getpid()}_{next(_databases)}"
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.url(name)
    finally:
        with server.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
