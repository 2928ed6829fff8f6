"""The same checks on every connector that has a real or local server here: bound
values of each kind come back as sent (text with quotes, ``%``, ``?`` and ``$1`` in it
included: no driver may read them as placeholders or SQL), a value may be used
twice, an empty result still has its columns, and an error names the database.

DuckDB, Postgres (and Redshift/Airhouse, the same connector), MariaDB, ClickHouse
(chDB behind its HTTP interface), BigQuery and Snowflake (their REST protocols over
DuckDB). Domo takes no bound values and refuses them (``test_domo.py``). The engines
that run here for real (DuckDB, Postgres, MariaDB) also stop a long statement when
interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy
from tests.support.bigquery_rest import BigQueryRest
from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.snowflake_rest import SnowflakeRest

TOKEN = "\x00q\x00"
TRICKY = 'it\'s 100% done? $1 -- ; /* x */ \\ "q"'
VALUES: list[Any] = [42, -7, 1.5, TRICKY, "", None, dt.date(2026, 1, 2)]
LOCAL = ConnectorPolicy.local()


def bound(template: str, *values: Any) -> BoundSql:
    """``template`` with ``{0}``, ``{1}``... as value markers."""
    text = template.format(*(f"{TOKEN}{i}{TOKEN}" for i in range(len(values))))
    return BoundSql(text, tuple(values), TOKEN)


# The SQL of each check per dialect: a value selected as a column, the same value
# used twice, and a typed empty result.
SELECT_ONE = {
    "duckdb": "SELECT {0} AS v",
    "postgres": "SELECT {0} AS v",
    "mysql": "SELECT {0} AS v",
    "clickhouse": "SELECT {0} AS v",
    "bigquery": "SELECT {0} AS v",
    "snowflake": "SELECT {0} AS v",
}
TWICE = "SELECT {0} AS a, {0} AS b"
EMPTY = {
    "duckdb": "SELECT 1::INTEGER AS i, 'x'::VARCHAR AS t WHERE false",
    "postgres": "SELECT 1::int AS i, 'x'::text AS t WHERE false",
    "mysql": "SELECT 1 AS i, 'x' AS t FROM DUAL WHERE false",
    "clickhouse": "SELECT toInt32(1) AS i, 'x' AS t WHERE 0",
    "bigquery": "SELECT 1 AS i, 'x' AS t WHERE false",
    "snowflake": "SELECT 1 AS i, 'x' AS t WHERE false",
}


def postgres_connector(
    pg_database: str, policy: ConnectorPolicy = LOCAL, **extra: str
) -> Connector:
    """The connector of a ``postgres`` database ``wh`` on the test database (``extra``:
    more connection settings); the pooling tests open theirs through it too."""
    url = make_url(pg_database)
    info = {
        "host": url.host or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "dbname": url.database or "",
        **extra,
    }
    return open_connector("postgres", "wh", {"settings": info}, policy=policy)


@pytest.fixture
def mysql_database() -> Iterator[str]:
    name = f"quarry_c_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(params=["duckdb", "postgres", "mysql", "clickhouse", "bigquery", "snowflake"])
def connector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Connector]]:
    kind: str = request.param
    cleanup: list[Callable[[], None]] = []
    if kind == "duckdb":
        found = open_connector("duckdb", "wh", {"temp_dir": tmp_path}, policy=LOCAL)
    elif kind == "postgres":
        found = postgres_connector(request.getfixturevalue("pg_database"))
    elif kind == "mysql":
        name = request.getfixturevalue("mysql_database")
        settings = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": name}
        found = open_connector("mysql", "wh", {"settings": settings}, policy=LOCAL)
    elif kind == "clickhouse":
        ch = ClickHouseHttp()
        cleanup.append(ch.close)
        settings = {"host": "127.0.0.1", "port": ch.port, "database": "default"}
        found = open_connector("clickhouse", "wh", {"settings": settings}, policy=LOCAL)
    elif kind == "bigquery":
        bq = BigQueryRest()
        cleanup.append(bq.close)
        settings = {"key": bq.key(), "api_endpoint": bq.url}
        found = open_connector("bigquery", "wh", {"settings": settings}, policy=LOCAL)
    else:
        sf = SnowflakeRest(user="u", password="p")
        cleanup.append(sf.close)
        settings = {
            "account": "acct",
            "user": "u",
            "password": "p",
            "warehouse": "w",
            "database": "d",
            "host": "127.0.0.1",
            "port": sf.port,
            "protocol": "http",
        }
        found = open_connector("snowflake", "wh", {"settings": settings}, policy=LOCAL)
    try:
        yield kind, found
    finally:
        found.close()
        for step in cleanup:
            step()


def only_value(table: Any) -> Any:
    assert table.num_rows == 1
    return table.column(0)[0].as_py()


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__ + ":" + json.dumps(str(v)))
def test_a_bound_value_comes_back_as_sent(connector: tuple[str, Connector], value: Any) -> None:
    kind, db = connector
    got = only_value(db.query(bound(SELECT_ONE[kind], value)))
    if isinstance(value, dt.date) and isinstance(got, str):
        got = dt.date.fromisoformat(got)  # a DATE parameter some servers echo as text
    if isinstance(value, float):
        assert float(got) == value
    elif isinstance(value, int):
        assert int(got) == value
    else:
        assert got == value


def test_a_value_used_twice_is_bound_twice(connector: tuple[str, Connector]) -> None:
    _kind, db = connector
    table = db.query(bound(TWICE, TRICKY))
    assert table.to_pylist()[0] in ({"a": TRICKY, "b": TRICKY}, {"A": TRICKY, "B": TRICKY})


def test_an_empty_result_keeps_its_columns(connector: tuple[str, Connector]) -> None:
    kind, db = connector
    table = db.query(BoundSql(EMPTY[kind]))
    assert table.num_rows == 0
    assert [n.lower() for n in table.column_names] == ["i", "t"]


def test_an_error_names_the_database(connector: tuple[str, Connector]) -> None:
    _kind, db = connector
    with pytest.raises(ConnectorError) as failed:
        db.query(BoundSql("SELECT * FROM no_such_table_anywhere"))
    assert failed.value.details["database"] == "wh"


LONG = {
    "duckdb": "SELECT count(*) FROM range(1000000000000) a",
    "postgres": "SELECT pg_sleep(600)",
    "mysql": "SELECT SLEEP(600)",
}


@pytest.mark.parametrize("kind", sorted(LONG))
def test_interrupt_stops_a_long_statement(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "duckdb":
        db = open_connector("duckdb", "wh", {"temp_dir": tmp_path}, policy=LOCAL)
    elif kind == "postgres":
        db = postgres_connector(request.getfixturevalue("pg_database"))
    else:
        name = request.getfixturevalue("mysql_database")
        settings = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": name}
        db = open_connector("mysql", "wh", {"settings": settings}, policy=LOCAL)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(db.query(BoundSql(LONG[kind])))
        except ConnectorError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        # An interrupt before the statement reached the database stops nothing: repeat
        # until the statement has ended (the test's timeout bounds the loop).
        while worker.is_alive():
            db.interrupt()
            worker.join(0.2)
    finally:
        db.close()
    (result,) = outcome
    # Stopped: an error, or (MariaDB's SLEEP) an early 1 instead of 600 seconds.
    assert isinstance(result, ConnectorError) or only_value(result) == 1
