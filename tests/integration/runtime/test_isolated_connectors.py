"""The connector host on its own: a real child process answering through the
``Connector`` port as the inline connectors do, with no secret in its environment,
a capped address space, interrupts that reach it, and a life no longer than its
parent's."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from quarry.runtime.connectors import isolated
from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.duckdb import DuckDbConnector
from quarry.runtime.connectors.guard import TargetRefused
from quarry.runtime.connectors.isolated import (
    HEADROOM_BYTES,
    ConnectorHost,
    IsolatedConnector,
    memory_bytes,
)
from quarry.runtime.connectors.policy import ConnectorPolicy
from tests.support.processes import wait_until

POLICY = ConnectorPolicy(tenant_sql_isolation="process", duckdb_memory_limit="1GB")
SPIN = "SELECT sum(a.range * b.range) AS s FROM range(100000) a, range(100000) b"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectorHost]:
    # Secrets of the kinds a fleet process holds, which the child must not inherit.
    monkeypatch.setenv("QUARRY_DATABASE_URL", "postgresql://quarry:s3cr3t-state@db/quarry")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-object-store")
    monkeypatch.setenv("PGPASSWORD", "s3cr3t-pg")
    started = ConnectorHost(POLICY, lambda: tmp_path)
    yield started
    started.close()


def duckdb_in(host: ConnectorHost, tmp_path: Path) -> IsolatedConnector:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return IsolatedConnector(host, "local", "duckdb", "duckdb", {"temp_dir": temp})


def test_results_match_the_inline_connector(host: ConnectorHost, tmp_path: Path) -> None:
    assert host.pid is None  # nothing started until a database is opened
    child = duckdb_in(host, tmp_path)
    assert host.pid is not None and host.pid != os.getpid()
    inline = DuckDbConnector("local", policy=POLICY, temp_dir=tmp_path / "tmp")
    try:
        for sql in (
            BoundSql(
                "SELECT 1 AS i, 'a' AS s, DATE '2026-01-02' AS d, 1.5::DECIMAL(10,2) AS n, "
                "NULL AS z, [1, 2] AS l"
            ),
            BoundSql("SELECT ?1? + 1 AS x, ?0? AS y", params=("v", 41), token="?"),
            BoundSql("CREATE TABLE t AS SELECT 1 AS x"),
            BoundSql("SELECT range AS r FROM range(0)"),
        ):
            assert child.query(sql) == inline.query(sql), sql.text
        # The child keeps the run's state between statements, as the inline one does.
        assert child.query(BoundSql("SELECT x FROM t")).to_pylist() == [{"x": 1}]
    finally:
        inline.close()
    row = child.query(BoundSql("SELECT DATE '2026-01-02' AS d, 1.5::DECIMAL(10,2) AS n"))
    assert row.to_pylist() == [{"d": dt.date(2026, 1, 2), "n": Decimal("1.50")}]


def test_the_child_environment_and_limits(host: ConnectorHost, tmp_path: Path) -> None:
    duckdb_in(host, tmp_path).query(BoundSql("SELECT 1"))
    assert host.pid is not None
    environ = Path(f"/proc/{host.pid}/environ").read_bytes().decode().split("\0")
    names = {entry.split("=", 1)[0] for entry in environ if entry}
    assert "QUARRY_DATABASE_URL" in os.environ  # what the parent holds...
    assert names <= {"PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ", "HOME"}
    assert not any(secret in "\n".join(environ) for secret in ("s3cr3t", "postgresql://"))
    assert f"HOME={tmp_path}" in environ
    limits = Path(f"/proc/{host.pid}/limits").read_text().splitlines()
    address = next(line for line in limits if line.startswith("Max address space"))
    assert address.split()[3] == str(memory_bytes("1GB") + HEADROOM_BYTES)
    core = next(line for line in limits if line.startswith("Max core file size"))
    assert core.split()[4] == "0"


def test_errors_come_back_as_connector_errors(host: ConnectorHost, tmp_path: Path) -> None:
    child = duckdb_in(host, tmp_path)
    with pytest.raises(ConnectorError, match="file system operations are disabled"):
        child.query(BoundSql("SELECT * FROM read_text('/proc/self/environ')"))
    with pytest.raises(ConnectorError, match="nope") as caught:
        child.query(BoundSql("SELECT * FROM nope"))
    assert caught.value.details["database"] == "local"
    assert child.query(BoundSql("SELECT 2 AS x")).to_pylist() == [{"x": 2}]


def test_an_interrupt_reaches_the_statement_in_the_child(
    host: ConnectorHost, tmp_path: Path
) -> None:
    child = duckdb_in(host, tmp_path)
    threading.Timer(0.5, child.interrupt).start()
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=r"(?i)interrupt"):
        child.query(BoundSql(SPIN))
    assert time.monotonic() - started < isolated.KILL_GRACE_SECONDS
    assert child.query(BoundSql("SELECT 3 AS x")).to_pylist() == [{"x": 3}]


def test_a_child_that_does_not_stop_is_killed(
    host: ConnectorHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolated, "KILL_GRACE_SECONDS", 0.5)
    child = duckdb_in(host, tmp_path)
    assert host.pid is not None
    os.kill(host.pid, signal.SIGSTOP)  # it can no longer read the interrupt
    threading.Timer(0.3, child.interrupt).start()
    with pytest.raises(ConnectorError, match="did not stop when interrupted"):
        child.query(BoundSql(SPIN))
    assert host.process is not None
    assert host.process.wait(10) == -signal.SIGKILL
    with pytest.raises(ConnectorError, match="did not stop"):
        child.query(BoundSql("SELECT 1"))


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL (no cleanup at all) takes its child with it."""
    script = textwrap.dedent(
        f"""
        import sys, pathlib
        from quarry.runtime.connectors.isolated import ConnectorHost, IsolatedConnector
        from quarry.runtime.connectors.policy import ConnectorPolicy
        from quarry.runtime.connectors.base import BoundSql
        home = pathlib.Path({str(tmp_path)!r})
        host = ConnectorHost(ConnectorPolicy(tenant_sql_isolation="process"), lambda: home)
        c = IsolatedConnector(host, "local", "duckdb", "duckdb", {{"temp_dir": home}})
        c.query(BoundSql("SELECT 1"))
        print(host.pid, flush=True)
        c.query(BoundSql({SPIN!r}))
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()
    parent.wait()

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # exited, waiting for init to reap it

    wait_until(gone, 10, "the connector host to exit after its parent")


def test_memory_limits_in_bytes() -> None:
    assert memory_bytes("2GB") == 2 * 10**9
    assert memory_bytes("512MiB") == 512 << 20
    assert memory_bytes("80%") == 0  # not a size: no cap beyond the machine's


def test_a_warehouse_through_the_child(host: ConnectorHost, tmp_path: Path) -> None:
    """Postgres opened in the child with the parameters the parent resolved: the
    guard's refusals keep their type, and the parent redacts resolved secrets."""
    loopback = ConnectorPolicy(tenant_sql_isolation="process", warehouse_allow_loopback=True)
    info = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "dbname": "postgres"}
    allowed = ConnectorHost(loopback, lambda: tmp_path)
    try:
        wh = IsolatedConnector(allowed, "wh", "postgres", "postgres", {"conninfo": info})
        assert wh.query(BoundSql("SELECT 1 AS x")).to_pylist() == [{"x": 1}]
        unknown = {**info, "user": "s3cr3t_role"}
        with pytest.raises(ConnectorError) as caught:
            IsolatedConnector(
                allowed,
                "wh2",
                "postgres",
                "postgres",
                {"conninfo": unknown},
                redact=lambda text: text.replace("s3cr3t_role", "[secret]"),
            ).query(BoundSql("SELECT 1"))
        assert "[secret]" in caught.value.message and "s3cr3t" not in caught.value.message
    finally:
        allowed.close()
    refused = IsolatedConnector(host, "wh", "postgres", "postgres", {"conninfo": info})
    with pytest.raises(TargetRefused, match="loopback"):
        refused.query(BoundSql("SELECT 1"))
