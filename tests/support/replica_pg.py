"""A streaming read replica of a private PostgreSQL cluster (``private_pg``).

``pg_basebackup -R -X stream`` copies the primary over a replication connection
(``initdb``'s default ``pg_hba.conf`` trusts replication from 127.0.0.1) into a
second temporary directory and writes ``standby.signal`` + ``primary_conninfo``; the
copy is started on its own free port as a hot standby, so it answers read-only
queries while it replays the primary's WAL. As with the primary, every server
command runs as the ``postgres`` OS user when the tests run as root. Stopped and
removed afterwards.

Helpers a test needs to *see* lag: :meth:`Replica.pause_replay` /
:meth:`Replica.resume_replay` (``pg_wal_replay_pause()``: the standby keeps receiving
WAL but stops applying it) and :meth:`Replica.wait_caught_up`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.private_pg import SERVER_USER, PrivateCluster
from tests.support.services import free_port


@dataclass
class Replica:
    primary: PrivateCluster
    cluster: PrivateCluster

    def dsn(self, database: str = "postgres") -> str:
        return self.cluster.dsn(database)

    def url(self, database: str = "postgres") -> str:
        return self.cluster.url(database)

    def _execute(self, sql: str) -> object:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]

    def pause_replay(self) -> None:
        self._execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._execute("SELECT pg_wal_replay_resume()")

    def lag_bytes(self) -> int:
        """WAL the primary has written that this standby has not replayed yet."""
        with psycopg.connect(self.primary.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            found = conn.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint",
                (row[0],),
            ).fetchone()
        assert found is not None
        return max(0, int(found[0]))

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until everything the primary had written when called is replayed here."""
        with psycopg.connect(self.primary.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica did not replay up to {target} in {timeout}s:\n"
                        f"{self.cluster.log()}"
                    )
                time.sleep(0.02)


@contextmanager
def streaming_replica(primary: PrivateCluster) -> Iterator[Replica]:
    """A hot standby of ``primary`` on a free port, replaying it, until the block ends."""
    root = Path(tempfile.mkdtemp(prefix="quarry-replica-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PrivateCluster(bindir=primary.bindir, root=root, port=free_port())
    try:
        cluster._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(cluster.datadir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            timeout=120.0,
        )
        cluster.start()
        replica = Replica(primary=primary, cluster=cluster)
        replica.wait_caught_up()
        yield replica
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped, or never started
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
