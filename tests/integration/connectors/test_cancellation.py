"""A cancelled step stops its statement on the warehouse's side, not only in the
client: ClickHouse gets ``KILL QUERY`` for the statement's own ``query_id``, BigQuery a
``jobs.cancel`` for the job Quarry named, Snowflake ``SYSTEM$CANCEL_ALL_QUERIES`` for
the statement's session. Each local server holds a marked statement until it hears
that request (and only then answers it as cancelled), so without the server-side
cancel the statement would not end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy
from tests.support import bigquery_rest, clickhouse_http, snowflake_rest

LOCAL = ConnectorPolicy.local()
HELD = BoundSql("SELECT 'quarry_hold' AS x")


@pytest.fixture(params=["clickhouse", "bigquery", "snowflake"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Connector]]:
    kind: str = request.param
    server: Any
    if kind == "clickhouse":
        server = clickhouse_http.ClickHouseHttp()
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "database": ""}
    elif kind == "bigquery":
        server = bigquery_rest.BigQueryRest()
        settings = {"key": server.key(), "api_endpoint": server.url}
    else:
        server = snowflake_rest.SnowflakeRest(user="u", password="p")
        settings = {
            "account": "acct",
            "user": "u",
            "password": "p",
            "warehouse": "w",
            "database": "d",
            "host": "127.0.0.1",
            "port": server.port,
            "protocol": "http",
        }
    db = open_connector(kind, "wh", {"settings": settings}, policy=LOCAL)
    try:
        yield kind, server, db
    finally:
        db.close()
        server.close()


def test_interrupt_cancels_the_statement_on_the_server(
    warehouse: tuple[str, Any, Connector],
) -> None:
    kind, server, db = warehouse
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(db.query(HELD))
        except ConnectorError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert server.held.wait(30), "the statement never reached the server"
    db.interrupt()
    worker.join(30)
    assert not worker.is_alive(), "the statement did not end after interrupt()"
    (result,) = outcome
    assert isinstance(result, ConnectorError)
    if kind == "clickhouse":
        held = [r.query_id for r in server.requests if "quarry_hold" in r.query]
        assert held and held[0].startswith("quarry-")
        assert server.kills == held
        assert "cancelled" in result.message.lower()
    elif kind == "bigquery":
        held = [job for job, data in server.jobs.items() if "quarry_hold" in str(data)]
        assert server.cancels == held and len(held) == 1
        assert "cancelled" in result.message.lower()
    else:
        assert len(server.cancels) == 1
        assert "canceled" in result.message.lower()


def test_interrupt_with_nothing_running_sends_nothing(
    warehouse: tuple[str, Any, Connector],
) -> None:
    kind, server, db = warehouse
    (row,) = db.query(BoundSql("SELECT 1 AS one")).to_pylist()
    assert list(row.values()) == [1]  # Snowflake names it ONE
    db.interrupt()
    cancels = {"clickhouse": "kills", "bigquery": "cancels", "snowflake": "cancels"}[kind]
    assert getattr(server, cancels) == []
