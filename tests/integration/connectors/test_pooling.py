"""Postgres connections are kept between runs of one process (``pool.py``): the next
connector with exactly the same values reuses the server session, reset to a fresh
one (no setting, temporary table or open transaction carries over); other values,
or a connection left inside a transaction, get a connection of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from quarry.runtime.connectors import postgres
from quarry.runtime.connectors.base import BoundSql, Connector
from quarry.runtime.connectors.kinds import open_connector
from tests.integration.connectors.test_conformance import LOCAL


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    postgres.IDLE.clear()
    yield
    postgres.IDLE.clear()


def _open(pg_database: str, **extra: str) -> Connector:
    url = make_url(pg_database)
    info = {
        "host": url.host or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "dbname": url.database or "",
        **extra,
    }
    return open_connector("postgres", "wh", {"settings": info}, policy=LOCAL)


def _one(db: Connector, sql: str) -> object:
    (row,) = db.query(BoundSql(sql)).to_pylist()
    return next(iter(row.values()))


def test_the_next_run_reuses_the_session_reset(pg_database: str) -> None:
    first = _open(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.query(BoundSql("SET search_path TO pg_catalog"))
    first.query(BoundSql("CREATE TEMP TABLE leftover AS SELECT 1 AS x"))
    first.close()
    assert postgres.IDLE.size() == 1
    second = _open(pg_database)
    try:
        assert _one(second, "SELECT pg_backend_pid()") == pid  # no new login
        assert _one(second, "SHOW search_path") == '"$user", public'
        assert _one(second, "SELECT to_regclass('pg_temp.leftover') IS NULL") is True
    finally:
        second.close()


def test_other_values_or_an_open_transaction_get_their_own(pg_database: str) -> None:
    first = _open(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.close()
    other = _open(pg_database, application_name="other")
    try:
        assert _one(other, "SELECT pg_backend_pid()") != pid  # different values, own key
        other.query(BoundSql("BEGIN"))  # left open at the end of the run
    finally:
        other.close()
    assert postgres.IDLE.size() == 1  # only the first: the open transaction was closed
    again = _open(pg_database, application_name="other")
    try:
        assert _one(again, "SELECT txid_current_if_assigned() IS NULL") is True
        assert _one(again, "SELECT pg_backend_pid()") not in (pid,)
    finally:
        again.close()


def test_a_connection_killed_while_idle_is_replaced(pg_database: str) -> None:
    first = _open(pg_database)
    pid = _one(first, "SELECT pg_backend_pid()")
    first.close()
    killer = _open(pg_database, application_name="killer")
    try:
        assert _one(killer, f"SELECT pg_terminate_backend({pid})") is True
    finally:
        killer.close()
    second = _open(pg_database)
    try:
        assert _one(second, "SELECT 1") == 1  # the dead one was dropped, a new one opened
        assert _one(second, "SELECT pg_backend_pid()") != pid
    finally:
        second.close()
