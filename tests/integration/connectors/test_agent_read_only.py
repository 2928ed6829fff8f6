"""An agent's SQL runs read-only on every database an agent can use, and each lock
holds on its own: the statement check (``read_only_query``, the dialect's parser)
refuses a write before anything runs, and the database's own read-only mode
(``BoundSql.read_only``: Postgres ``BEGIN READ ONLY``, MySQL/MariaDB ``START
TRANSACTION READ ONLY``, ClickHouse ``readonly=1``, BigQuery's dry-run statement
type) refuses a write that got past the check; Snowflake and DuckDB rely on the
``SELECT * FROM (...)`` wrapper, in which no write parses. The data stays as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quarry.agents.tools.base import ToolFailed
from quarry.agents.tools.readonly import SqlLimits, read_only_query, run_read_only
from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.kinds import open_connector
from tests.integration.connectors.test_conformance import LOCAL, mysql_database, postgres_connector
from tests.support.bigquery_rest import BigQueryRest
from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.snowflake_rest import SnowflakeRest

__all__ = ["mysql_database"]  # the fixture, used by name
LIMITS = SqlLimits(timeout=20.0)

# A write that a parser-free caller might send: what the database itself must refuse.
WRITES = {
    "postgres": "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) AS n FROM gone",
    "mysql": "INSERT INTO t VALUES (2)",
    "clickhouse": "INSERT INTO t VALUES (2)",
    "bigquery": "DELETE FROM t WHERE true",
}
WRAPPED_WRITES = {"snowflake": "DELETE FROM t", "duckdb": "DELETE FROM t"}


class Db:
    def __init__(self, kind: str, connector: Connector, count: Callable[[], int]) -> None:
        self.kind, self.connector, self.count = kind, connector, count


@pytest.fixture(params=["duckdb", "postgres", "mysql", "clickhouse", "bigquery", "snowflake"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    kind: str = request.param
    cleanup: list[Callable[[], None]] = []
    found: Connector
    if kind == "duckdb":
        found = open_connector("duckdb", "wh", {"temp_dir": tmp_path}, policy=LOCAL)
        found.query(BoundSql("CREATE TABLE t AS SELECT 1 AS x"))
    elif kind == "postgres":
        found = postgres_connector(request.getfixturevalue("pg_database"))
        found.query(BoundSql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"))
    elif kind == "mysql":
        name = request.getfixturevalue("mysql_database")
        settings = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": name}
        found = open_connector("mysql", "wh", {"settings": settings}, policy=LOCAL)
        found.query(BoundSql("CREATE TABLE t (x int)"))
        found.query(BoundSql("INSERT INTO t VALUES (1)"))
    elif kind == "clickhouse":
        ch = ClickHouseHttp()
        cleanup.append(ch.close)
        ch.setup("CREATE TABLE t (x Int64) ENGINE = Memory")
        ch.setup("INSERT INTO t VALUES (1)")
        settings_ch: dict[str, Any] = {"host": "127.0.0.1", "port": ch.port, "database": ""}
        found = open_connector("clickhouse", "wh", {"settings": settings_ch}, policy=LOCAL)
    elif kind == "bigquery":
        bq = BigQueryRest()
        cleanup.append(bq.close)
        bq.db.execute("CREATE TABLE t AS SELECT 1 AS x")
        settings_bq = {"key": bq.key(), "api_endpoint": bq.url}
        found = open_connector("bigquery", "wh", {"settings": settings_bq}, policy=LOCAL)
    else:
        sf = SnowflakeRest(user="u", password="p")
        cleanup.append(sf.close)
        sf.db.execute("CREATE TABLE t AS SELECT 1 AS x")
        settings_sf = {
            "account": "acct",
            "user": "u",
            "password": "p",
            "warehouse": "w",
            "database": "d",
            "host": "127.0.0.1",
            "port": sf.port,
            "protocol": "http",
        }
        found = open_connector("snowflake", "wh", {"settings": settings_sf}, policy=LOCAL)

    def count() -> int:
        (row,) = found.query(BoundSql("SELECT count(*) AS n FROM t")).to_pylist()
        return int(next(iter(row.values())))

    try:
        yield Db(kind, found, count)
    finally:
        found.close()
        for step in cleanup:
            step()


def test_a_query_runs_read_only(db: Db) -> None:
    query = read_only_query("SELECT x FROM t;", db.connector.dialect)
    table = run_read_only(db.connector, query, LIMITS)
    assert [list(row.values()) for row in table.to_pylist()] == [[1]]


def test_the_statement_check_refuses_writes_in_each_dialect(db: Db) -> None:
    for write in ("DELETE FROM t", "INSERT INTO t VALUES (2)", "DROP TABLE t"):
        with pytest.raises(ToolFailed, match="only read-only queries"):
            read_only_query(write, db.connector.dialect)
    assert db.count() == 1


def test_the_database_refuses_a_write_that_passed_no_check(db: Db) -> None:
    if db.kind in WRAPPED_WRITES:
        # No read-only session here: the write inside the agent's wrapper does not parse.
        with pytest.raises(ToolFailed, match="the database refused the query"):
            run_read_only(db.connector, WRAPPED_WRITES[db.kind], LIMITS)
    else:
        with pytest.raises(ConnectorError) as refused:
            db.connector.query(BoundSql(WRITES[db.kind], extra={"read_only": 20.0}))
        words = {
            "postgres": "read-only transaction",
            "mysql": "READ ONLY transaction",
            "clickhouse": "readonly",
            "bigquery": "plans this statement as DELETE",
        }[db.kind]
        assert words.lower() in refused.value.message.lower()
    assert db.count() == 1
    # The same write without the read-only mark is not refused by the database: the
    # mark is what refused it (Snowflake and DuckDB: the wrapper).
    if db.kind == "mysql":
        db.connector.query(BoundSql(WRITES["mysql"]))
        assert db.count() == 2
