"""MySQL/MariaDB connections kept between runs of one process (``connectors/pool.py``,
``mysql.POOL``), against the real MariaDB at 127.0.0.1:3306: the next connector with
the same values reuses the server session (one connection id), reset to a fresh one
by ``COM_RESET_CONNECTION`` (session and user variables, temporary tables, an open
transaction, prepared statements, named locks and read-only mode do not carry over);
a session whose database or role changed, a killed or interrupted one is not kept; a
connection killed while idle is replaced at checkout; the pool's size, bound and
wait hold; and agent SQL is still refused writes on a reused session."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pymysql
import pytest

from quarry.agents.tools.readonly import SqlLimits, read_only_query, run_read_only
from quarry.node.node import Node
from quarry.runtime.connectors import mysql
from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.guard import TargetRefused
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.services import Services
from tests.integration.connectors.conftest import FLEET_LOOPBACK, FLEET_STRICT
from tests.integration.connectors.test_conformance import LOCAL, mysql_database
from tests.support.processes import wait_until

__all__ = ["mysql_database"]  # the fixture, used by name


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    mysql.POOL.close_all()
    yield
    mysql.POOL.close_all()


def connector(database: str, policy: ConnectorPolicy = LOCAL) -> Connector:
    settings = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": database}
    return open_connector("mysql", "wh", {"settings": settings}, policy=policy)


@pytest.fixture
def admin() -> Iterator[pymysql.connections.Connection[Any]]:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _one(db: Connector, sql: str, **extra: Any) -> object:
    (row,) = db.query(BoundSql(sql, extra=extra)).to_pylist()
    return next(iter(row.values()))


def _stats(db: Connector) -> tuple[int, int]:
    """(idle, open) of the connector's pool key."""
    assert isinstance(db, mysql.MysqlConnector)
    key = db.pool_key
    assert key is not None
    return mysql.POOL.stats(key)


def _alive(admin: pymysql.connections.Connection[Any], connection_id: object) -> bool:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (connection_id,)
        )
        row = cur.fetchone()
    return row is not None and row[0] == 1


def test_the_next_run_reuses_the_session_reset(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    setup = connector(mysql_database)
    setup.query(BoundSql("CREATE TABLE t (x int) ENGINE=InnoDB"))
    setup.close()
    first = connector(mysql_database)
    cid = _one(first, "SELECT CONNECTION_ID()")
    first.query(BoundSql("CREATE TEMPORARY TABLE leftover (x int)"))
    first.query(BoundSql("SET @mine = 'secret'"))
    first.query(BoundSql("PREPARE mine FROM 'SELECT 1'"))
    lock = f"quarry-{uuid.uuid4().hex}"
    assert _one(first, f"SELECT GET_LOCK('{lock}', 0)") == 1
    first.query(BoundSql("START TRANSACTION"))
    first.query(BoundSql("INSERT INTO t VALUES (1)"))  # never committed
    first.query(BoundSql("SET SESSION sql_mode = 'ANSI_QUOTES'"))
    first.query(BoundSql("SET time_zone = '+05:00'"))
    first.query(BoundSql("SET SESSION TRANSACTION READ ONLY"))
    first.query(BoundSql("SET SESSION max_statement_time = 0.001"))
    first.close()
    assert _stats(first) == (1, 1)
    with admin.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM `{mysql_database}`.t")
        assert cur.fetchone() == (0,)  # rolled back, not left holding its locks
    second = connector(mysql_database)
    try:
        assert _one(second, "SELECT CONNECTION_ID()") == cid  # no new login
        assert _one(second, "SELECT @mine") is None
        assert _one(second, f"SELECT IS_USED_LOCK('{lock}')") is None
        assert _one(second, "SELECT @@in_transaction") == 0
        assert _one(second, "SELECT count(*) FROM t") == 0
        assert _one(second, "SELECT @@session.sql_mode = @@global.sql_mode") == 1
        assert _one(second, "SELECT @@time_zone") == "+00:00"  # the connector's, again
        assert _one(second, "SELECT @@autocommit") == 1
        assert _one(second, "SELECT @@character_set_client") == "utf8mb4"
        assert _one(second, "SELECT @@session.max_statement_time") == 0
        assert _one(second, "SELECT SLEEP(0.05)") == 0  # not stopped by a 1 ms limit
        second.query(BoundSql("INSERT INTO t VALUES (2)"))  # not read-only
        # Would fail "already exists" if the first run's table were still there.
        second.query(BoundSql("CREATE TEMPORARY TABLE leftover (x int)"))
        assert _one(second, "SELECT CONNECTION_ID()") == cid
        with pytest.raises(ConnectorError, match="Unknown prepared statement"):
            second.query(BoundSql("EXECUTE mine"))
    finally:
        second.close()
    with admin.cursor() as cur:
        cur.execute(f"SELECT x FROM `{mysql_database}`.t")
        assert cur.fetchall() == ((2,),)


def test_a_changed_database_is_not_kept(mysql_database: str) -> None:
    """``USE`` survives ``COM_RESET_CONNECTION``: such a session is closed."""
    db = connector(mysql_database)
    cid = _one(db, "SELECT CONNECTION_ID()")
    db.query(BoundSql("USE information_schema"))
    db.close()
    assert _stats(db) == (0, 0)
    again = connector(mysql_database)
    try:
        assert _one(again, "SELECT DATABASE()") == mysql_database
        assert _one(again, "SELECT CONNECTION_ID()") != cid
    finally:
        again.close()


def test_a_changed_role_is_not_kept(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    """``SET ROLE`` survives ``COM_RESET_CONNECTION`` on MariaDB: such a session is
    closed, so a role's privileges never reach the next run."""
    role = f"quarry_r_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role}")
        cur.execute(f"GRANT {role} TO CURRENT_USER")
    try:
        db = connector(mysql_database)
        cid = _one(db, "SELECT CONNECTION_ID()")
        db.query(BoundSql(f"SET ROLE {role}"))
        assert _one(db, "SELECT CURRENT_ROLE()") == role
        db.close()
        assert _stats(db) == (0, 0)
        again = connector(mysql_database)
        try:
            assert _one(again, "SELECT CURRENT_ROLE()") is None
            assert _one(again, "SELECT CONNECTION_ID()") != cid
        finally:
            again.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP ROLE {role}")


def test_a_connection_killed_while_idle_is_replaced(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    first = connector(mysql_database)
    cid = _one(first, "SELECT CONNECTION_ID()")
    first.close()
    assert _stats(first) == (1, 1)
    with admin.cursor() as cur:
        cur.execute("KILL CONNECTION %s", (cid,))
    wait_until(lambda: not _alive(admin, cid), 10, "the killed connection to end")
    second = connector(mysql_database)
    try:
        assert _one(second, "SELECT 1") == 1  # the dead one was checked, dropped
        assert _one(second, "SELECT CONNECTION_ID()") != cid
    finally:
        second.close()
    assert _stats(second) == (1, 1)  # the dead one no longer counts


def test_a_connection_killed_during_a_run_fails_one_statement_only(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    db = connector(mysql_database)
    try:
        cid = _one(db, "SELECT CONNECTION_ID()")
        with admin.cursor() as cur:
            cur.execute("KILL CONNECTION %s", (cid,))
        wait_until(lambda: not _alive(admin, cid), 10, "the killed connection to end")
        with pytest.raises(ConnectorError):
            db.query(BoundSql("SELECT 1"))
        assert _one(db, "SELECT 2") == 2  # a new connection for the next statement
    finally:
        db.close()
    assert _stats(db) == (1, 1)


class SlowStatement:
    """``SELECT SLEEP(600)`` on its own thread (its own connection of ``db``), after
    that connection's id was taken; started, it waits until the server runs it."""

    def __init__(self, db: Connector, admin: pymysql.connections.Connection[Any]) -> None:
        self.db = db
        self.statement = f"SELECT SLEEP(600) AS `quarry-wait-{uuid.uuid4().hex}`"
        self.connection_id: object = None
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        with admin.cursor() as cur:

            def running() -> bool:
                cur.execute(
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO = %s",
                    (self.statement,),
                )
                return bool(cur.fetchone() == (1,))

            wait_until(running, 30, "the statement to reach the server")

    def _run(self) -> None:
        try:
            self.connection_id = _one(self.db, "SELECT CONNECTION_ID()")
            self.outcome.append(_one(self.db, self.statement))
        except Exception as exc:  # stopped: the error is the outcome
            self.outcome.append(exc)

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_an_interrupted_connection_is_closed_not_pooled(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    """MariaDB ends a killed ``SLEEP`` with 1, not an error: the connection looks
    healthy, yet a ``KILL QUERY`` aimed at it may still be on its way, so it is
    closed at the end of the run."""
    db = connector(mysql_database)
    try:
        slow = SlowStatement(db, admin)
        db.interrupt()
        slow.join()
    finally:
        db.close()
    (result,) = slow.outcome
    assert result == 1 or isinstance(result, ConnectorError)
    assert _stats(db) == (0, 0)
    wait_until(lambda: not _alive(admin, slow.connection_id), 10, "the session to end")
    again = connector(mysql_database)
    try:
        assert _one(again, "SELECT CONNECTION_ID()") != slow.connection_id
    finally:
        again.close()


def test_close_during_a_statement_ends_that_session(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    """A run closed from another thread while a statement runs (a worker stopping a
    run): ``close`` returns without waiting for the statement, the session is ended
    on the server (``KILL CONNECTION``), nothing is pooled; the run's idle
    connection of another thread is pooled."""
    db = connector(mysql_database)
    idle = _one(db, "SELECT CONNECTION_ID()")  # this thread's, idle at close
    slow = SlowStatement(db, admin)
    db.close()
    slow.join()
    (result,) = slow.outcome
    assert isinstance(result, Exception)
    assert _stats(db) == (1, 1)
    wait_until(lambda: not _alive(admin, slow.connection_id), 10, "the session to end")
    again = connector(mysql_database)
    try:
        assert _one(again, "SELECT CONNECTION_ID()") == idle
    finally:
        again.close()


def test_at_max_open_a_run_waits_then_fails_naming_the_database(mysql_database: str) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_max_open=1, warehouse_pool_timeout=0.2)
    holder = connector(mysql_database, policy)
    cid = _one(holder, "SELECT CONNECTION_ID()")  # holds the only one until it closes
    waiting = connector(mysql_database, policy)
    try:
        with pytest.raises(ConnectorError, match=r"database 'wh': all 1 connections"):
            waiting.query(BoundSql("SELECT 1"))
        holder.close()
        assert _one(waiting, "SELECT CONNECTION_ID()") == cid  # the one given back
    finally:
        waiting.close()
        holder.close()


def test_without_max_open_runs_never_wait_and_only_size_are_kept(mysql_database: str) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_size=2)
    runs = [connector(mysql_database, policy) for _ in range(4)]
    ids = {_one(run, "SELECT CONNECTION_ID()") for run in runs}  # four at once
    assert len(ids) == 4
    for run in runs:
        run.close()
    assert _stats(runs[0]) == (2, 2)  # two kept idle, two closed


def test_pool_size_zero_closes_at_the_end_of_the_run(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_size=0)
    first = connector(mysql_database, policy)
    cid = _one(first, "SELECT CONNECTION_ID()")
    first.close()
    wait_until(lambda: not _alive(admin, cid), 10, "the session to end")
    second = connector(mysql_database, policy)
    try:
        assert _one(second, "SELECT CONNECTION_ID()") != cid
    finally:
        second.close()


def test_a_connection_is_not_handed_to_another_policy(mysql_database: str) -> None:
    """A connection opened under one policy serves only connectors opened under the
    same one; a policy that refuses the host refuses it before any checkout."""
    first = connector(mysql_database, LOCAL)
    cid = _one(first, "SELECT CONNECTION_ID()")
    first.close()
    assert _stats(first) == (1, 1)
    refusing = connector(mysql_database, FLEET_STRICT)  # loopback refused
    try:
        with pytest.raises(TargetRefused, match="loopback"):
            refusing.query(BoundSql("SELECT 1"))
    finally:
        refusing.close()
    assert _stats(first) == (1, 1)  # untouched
    other = connector(mysql_database, FLEET_LOOPBACK)
    try:
        assert _one(other, "SELECT CONNECTION_ID()") != cid
    finally:
        other.close()
    assert isinstance(other, mysql.MysqlConnector)
    assert isinstance(first, mysql.MysqlConnector)
    assert other.pool_key != first.pool_key
    assert _stats(first) == (1, 1)


def test_agent_sql_is_refused_writes_on_a_reused_session(mysql_database: str) -> None:
    setup = connector(mysql_database)
    cid = _one(setup, "SELECT CONNECTION_ID()")
    setup.query(BoundSql("CREATE TABLE notes (n int)"))
    setup.query(BoundSql("INSERT INTO notes VALUES (1)"))
    setup.query(BoundSql("SET SESSION TRANSACTION READ WRITE"))
    setup.close()
    agent = connector(mysql_database)
    limits = SqlLimits(timeout=20.0)
    try:
        assert _one(agent, "SELECT CONNECTION_ID()") == cid  # the reused session
        table = run_read_only(agent, read_only_query("SELECT n FROM notes", "mysql"), limits)
        assert table.to_pylist() == [{"n": 1}]
        with pytest.raises(ConnectorError, match="READ ONLY transaction"):
            agent.query(BoundSql("DELETE FROM notes", extra={"read_only": 20.0}))
        # The refused writes' connection was closed: a new session, still read-only.
        assert _one(agent, "SELECT CONNECTION_ID()") != cid
        with pytest.raises(ConnectorError, match="READ ONLY transaction"):
            agent.query(BoundSql("UPDATE notes SET n = 3", extra={"read_only": 20.0}))
        assert _one(agent, "SELECT count(*) FROM notes", read_only=20.0) == 1
    finally:
        agent.close()
    workflow = connector(mysql_database)
    try:
        # Same session as the agent's last (reset), yet a workflow's write runs.
        workflow.query(BoundSql("INSERT INTO notes VALUES (2)"))
        assert _one(workflow, "SELECT @@tx_read_only") == 0
        assert _one(workflow, "SELECT count(*) FROM notes") == 2
    finally:
        workflow.close()


def test_a_stopping_node_ends_the_idle_sessions(
    mysql_database: str, admin: pymysql.connections.Connection[Any]
) -> None:
    """A worker's shutdown (``Node.stop``) closes the pooled connections then, not
    only at interpreter exit."""
    db = connector(mysql_database)
    cid = _one(db, "SELECT CONNECTION_ID()")
    db.close()
    assert _stats(db) == (1, 1)
    node = Node(cast(Services, object()))  # no parts: only the stop's epilogue runs
    asyncio.run(node.stop())
    assert _stats(db) == (0, 0)
    wait_until(lambda: not _alive(admin, cid), 10, "the pooled session to end")
