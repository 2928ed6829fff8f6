"""A private PostgreSQL cluster on its own port: a warehouse that is *not* the state
database's cluster, so the identity check can be seen to let a real warehouse
through while it refuses the state cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.services import free_port

_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextmanager
def private_cluster() -> Iterator[int]:
    """Start a throwaway cluster (trust auth) on a free port; yield the port."""
    if _BIN is None or not (_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed")
    # Not under pytest's tmp_path: its 0700 parents keep the postgres user out.
    data = Path(tempfile.mkdtemp(prefix="quarry-private-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = str(_BIN / "pg_ctl")
    subprocess.run(
        _as_postgres([ctl, "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield port
    finally:
        subprocess.run(
            _as_postgres([ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)
