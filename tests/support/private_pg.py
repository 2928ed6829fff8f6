"""A private PostgreSQL cluster for fault tests: one the test may stop and restart.

The shared server on 5432 must never go down under other tests, so a test that
restarts "the database" starts its own cluster with ``initdb`` + ``pg_ctl`` from the
installed server binaries, in a temporary directory, on a free port, with trust
auth on loopback only. ``initdb`` refuses to run as root, so as root every server
command runs as the ``postgres`` OS user (``runuser``); the directory is handed to
that user. The cluster is stopped and its directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.services import free_port

SERVER_USER = "postgres"


def server_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian layout), if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    found = [p for p in candidates if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    return found[-1] if found else None


@dataclass
class PrivateCluster:
    bindir: Path
    root: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL Quarry's settings take."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.log()}"
            )

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop (``fast``: cut every session, as a restart or failover does)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster; skips the test where the server binaries (or the
    ``postgres`` user, when running as root) are missing."""
    bindir = server_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="quarry-private-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(root)
            pytest.skip(f"running as root and there is no {SERVER_USER!r} user for initdb")
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PrivateCluster(bindir=bindir, root=root, port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped, or never started
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
