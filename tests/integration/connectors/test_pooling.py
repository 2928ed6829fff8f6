"""Postgres connections kept between runs of one process (``connectors/pool.py``),
against the real server: the next connector with the same values reuses the server
session reset to a fresh one (settings, read-only mode, timeouts, temporary tables
and prepared statements do not carry over), a backend terminated while idle is
replaced, a failed statement's connection is not kept, and the pool's bound is a
bounded wait ending in an error that names the database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from quarry.runtime.connectors import postgres
from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.pool import ConnectionPool
from quarry.store.identity import cluster_identity
from tests.integration.connectors.test_conformance import LOCAL, postgres_connector
from tests.support.processes import wait_until


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    postgres.POOL.close_all()
    yield
    postgres.POOL.close_all()


def _one(db: Connector, sql: str, **extra: Any) -> object:
    (row,) = db.query(BoundSql(sql, extra=extra)).to_pylist()
    return next(iter(row.values()))


def _admin(pg_database: str) -> psycopg.Connection[Any]:
    url = make_url(pg_database)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        dbname=url.database or "",
        autocommit=True,
    )


def test_the_next_run_reuses_the_session_reset(pg_database: str) -> None:
    first = postgres_connector(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.query(BoundSql("CREATE TEMP TABLE leftover AS SELECT 1 AS x"))
    first.query(BoundSql("PREPARE mine AS SELECT 1"))
    first.query(BoundSql("SET search_path TO pg_catalog"))
    first.query(BoundSql("SET default_transaction_read_only = on"))
    first.query(BoundSql("SET statement_timeout = 1"))
    first.close()
    second = postgres_connector(pg_database)
    try:
        assert _one(second, "SELECT pg_backend_pid()") == pid  # no new login
        assert _one(second, "SHOW search_path") == '"$user", public'
        assert _one(second, "SHOW default_transaction_read_only") == "off"
        assert _one(second, "SHOW statement_timeout") == "0"
        assert _one(second, "SELECT to_regclass('pg_temp.leftover') IS NULL") is True
        assert _one(second, "SELECT count(*) FROM pg_prepared_statements") == 0
        second.query(BoundSql("SELECT pg_sleep(0.01)"))  # no 1 ms timeout left over
    finally:
        second.close()


def test_a_statement_run_many_times_across_reused_sessions(pg_database: str) -> None:
    """The failure of the first pooling attempt (5327d4a): psycopg prepared a
    statement run five times, ``DISCARD ALL`` dropped it on the server, and the next
    run's ``EXECUTE _pg3_0`` failed. Same connection, twelve runs, every one works."""
    setup = postgres_connector(pg_database)
    setup.query(BoundSql("CREATE TABLE effects (at timestamptz NOT NULL)"))
    pid = _one(setup, "SELECT pg_backend_pid()")
    setup.close()
    for _ in range(12):
        run = postgres_connector(pg_database)
        try:
            insert = "INSERT INTO effects(at) VALUES (clock_timestamp()) RETURNING 1 AS one"
            assert _one(run, insert) == 1
            assert _one(run, "SELECT pg_backend_pid()") == pid
        finally:
            run.close()
    check = postgres_connector(pg_database)
    try:
        assert _one(check, "SELECT count(*) FROM effects") == 12
    finally:
        check.close()


def test_read_only_and_timeout_do_not_leak_between_checkouts(pg_database: str) -> None:
    setup = postgres_connector(pg_database)
    setup.query(BoundSql("CREATE TABLE notes (n int)"))
    setup.close()
    agent = postgres_connector(pg_database)
    pid = _one(agent, "SELECT pg_backend_pid()")
    # An agent statement: BEGIN READ ONLY + SET LOCAL statement_timeout, rolled back.
    assert _one(agent, "SELECT count(*) FROM notes", read_only=0.5) == 0
    with pytest.raises(ConnectorError, match="read-only transaction"):
        agent.query(BoundSql("INSERT INTO notes VALUES (1)", extra={"read_only": 5}))
    with pytest.raises(ConnectorError, match="statement timeout"):
        agent.query(BoundSql("SELECT pg_sleep(5)", extra={"read_only": 0.05}))
    agent.close()
    workflow = postgres_connector(pg_database)
    try:
        # Same session or not, a workflow's write and a slow statement both run.
        workflow.query(BoundSql("INSERT INTO notes VALUES (1)"))
        workflow.query(BoundSql("SELECT pg_sleep(0.1)"))
        assert _one(workflow, "SHOW transaction_read_only") == "off"
        assert _one(workflow, "SHOW statement_timeout") == "0"
        assert _one(workflow, "SELECT count(*) FROM notes") == 1
        # The failed statements' connections were closed, not kept: a new session.
        assert _one(workflow, "SELECT pg_backend_pid()") != pid
    finally:
        workflow.close()


def test_a_backend_terminated_while_idle_is_replaced(pg_database: str) -> None:
    first = postgres_connector(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.close()
    key_idle, _open_count = _stats(first)
    assert key_idle == 1
    with _admin(pg_database) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    second = postgres_connector(pg_database)
    try:
        assert _one(second, "SELECT 1") == 1  # the dead one was checked, dropped
        assert _one(second, "SELECT pg_backend_pid()") != pid
    finally:
        second.close()
    assert _stats(second) == (1, 1)  # the dead one no longer counts


def test_a_backend_terminated_during_a_run_fails_one_statement_only(pg_database: str) -> None:
    db = postgres_connector(pg_database)
    try:
        pid = _one(db, "SELECT pg_backend_pid()")
        with _admin(pg_database) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(ConnectorError):
            db.query(BoundSql("SELECT 1"))
        assert _one(db, "SELECT 2") == 2  # a new connection for the next statement
    finally:
        db.close()
    assert _stats(db) == (1, 1)


def test_other_values_get_their_own_connection(pg_database: str) -> None:
    first = postgres_connector(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.close()
    other = postgres_connector(pg_database, application_name="other")
    try:
        assert _one(other, "SELECT pg_backend_pid()") != pid
        assert _one(other, "SHOW application_name") == "other"
    finally:
        other.close()


def test_an_open_transaction_is_not_kept(pg_database: str) -> None:
    db = postgres_connector(pg_database)
    pid = _one(db, "SELECT pg_backend_pid()")
    db.query(BoundSql("BEGIN"))  # left open at the end of the run
    db.close()
    assert _stats(db) == (0, 0)
    again = postgres_connector(pg_database)
    try:
        assert _one(again, "SELECT pg_backend_pid()") != pid
    finally:
        again.close()


def test_at_max_open_a_run_waits_then_fails_naming_the_database(pg_database: str) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_max_open=1, warehouse_pool_timeout=0.2)
    holder = postgres_connector(pg_database, policy)
    assert _one(holder, "SELECT 1") == 1  # holds the only connection until it closes
    waiting = postgres_connector(pg_database, policy)
    try:
        with pytest.raises(ConnectorError, match=r"database 'wh': all 1 connections"):
            waiting.query(BoundSql("SELECT 1"))
        holder.close()
        assert _one(waiting, "SELECT 2") == 2  # the one given back
    finally:
        waiting.close()
        holder.close()


def test_without_max_open_runs_never_wait_and_only_size_are_kept(pg_database: str) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_size=2)
    runs = [postgres_connector(pg_database, policy) for _ in range(4)]
    pids = {_one(run, "SELECT pg_backend_pid()") for run in runs}  # four at once
    assert len(pids) == 4
    for run in runs:
        run.close()
    assert _stats(runs[0]) == (2, 2)  # two kept idle, two closed


def test_pool_size_zero_closes_at_the_end_of_the_run(pg_database: str) -> None:
    policy = dataclasses.replace(LOCAL, warehouse_pool_size=0)
    first = postgres_connector(pg_database, policy)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.close()
    second = postgres_connector(pg_database, policy)
    try:
        assert _one(second, "SELECT pg_backend_pid()") != pid
    finally:
        second.close()


def test_a_connection_is_not_handed_to_a_policy_that_refuses_its_server(
    pg_database: str,
) -> None:
    """The server identity check runs when a connection opens: a connection to the
    state cluster opened where that was allowed (tests) must not serve a policy that
    refuses it."""
    with _admin(pg_database) as admin, admin.cursor() as cur:
        identity = cluster_identity(cur)
    allowing = dataclasses.replace(
        LOCAL, state_cluster=identity, warehouse_allow_state_cluster=True
    )
    first = postgres_connector(pg_database, allowing)
    assert _one(first, "SELECT 1") == 1
    first.close()
    assert _stats(first) == (1, 1)
    refusing = postgres_connector(pg_database, dataclasses.replace(LOCAL, state_cluster=identity))
    try:
        with pytest.raises(ConnectorError, match="state"):
            refusing.query(BoundSql("SELECT 1"))
    finally:
        refusing.close()


def test_idle_connections_expire_without_another_checkout(pg_database: str) -> None:
    """A worker that goes quiet does not keep its sessions on the warehouse: the
    reaper closes them after ``idle_seconds`` though nothing is taken any more."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        check=postgres._check, close=postgres._close, idle_seconds=0.3
    )
    conn = pool.acquire("k", lambda: _admin(pg_database), max_open=0, timeout=1.0, database="wh")
    pid = conn.info.backend_pid
    pool.release("k", conn, reusable=True, keep=4)
    assert pool.stats("k") == (1, 1)
    wait_until(lambda: pool.stats("k") == (0, 0), 10, "the idle connection to expire")
    wait_until(lambda: conn.closed, 10, "the expired connection to be closed")
    with _admin(pg_database) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    assert row == (0,)


def _stats(db: Connector) -> tuple[int, int]:
    """(idle, open) of the connector's pool key."""
    assert isinstance(db, postgres.PostgresConnector)
    key = db.pool_key
    assert key is not None
    return postgres.POOL.stats(key)
