"""The DuckDB connector reuses the cursor of a read-only statement, and only that:
whatever another statement may leave on its connection never reaches the next one,
an interrupted cursor is not reused, and closing the connector closes them all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.duckdb import DuckDbConnector, leaves_no_state
from quarry.runtime.connectors.policy import ConnectorPolicy

POLICY = ConnectorPolicy(duckdb_threads=1, duckdb_memory_limit="256MB")
WHO = "SELECT current_connection_id() AS id"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE orders AS SELECT range AS id FROM range(5)")
    return path


@pytest.fixture
def db(shop: Path, tmp_path: Path) -> Iterator[DuckDbConnector]:
    connector = DuckDbConnector(
        "local", policy=POLICY, temp_dir=tmp_path / "tmp", database=shop, read_only=True
    )
    yield connector
    connector.close()


def who(db: DuckDbConnector, sql: str = WHO) -> int:
    return int(db.query(BoundSql(sql)).to_pylist()[0]["id"])


def test_read_only_statements_share_a_cursor_that_still_uses_the_database(
    db: DuckDbConnector,
) -> None:
    first = who(db)
    assert who(db) == first
    counted = db.query(BoundSql("SELECT count(*) AS n, current_connection_id() AS id FROM orders"))
    assert counted.to_pylist() == [{"n": 5, "id": first}]  # the pooled cursor kept its USE


@pytest.mark.parametrize(
    ("leave", "then", "clean"),
    [
        ("CREATE TEMP TABLE t AS SELECT 1 AS a", "SELECT count(*) AS n FROM t", None),
        ("SET VARIABLE v = 42", "SELECT getvariable('v') AS v", [{"v": None}]),
        ("USE memory", "SELECT count(*) AS n FROM orders", [{"n": 5}]),
        ("PREPARE p AS SELECT 7 AS a", "EXECUTE p", None),
        ("CREATE TEMP MACRO m(x) AS x + 1", "SELECT m(1) AS a", None),
    ],
)
def test_what_a_statement_leaves_on_its_connection_never_reaches_the_next(
    db: DuckDbConnector, leave: str, then: str, clean: list[dict[str, object]] | None
) -> None:
    pooled = who(db)
    db.query(BoundSql(leave))
    if clean is None:
        with pytest.raises(ConnectorError):
            db.query(BoundSql(then))
    else:
        assert db.query(BoundSql(then)).to_pylist() == clean
        assert who(db) == pooled  # the pooled cursor was not the one that ran it


def test_a_transaction_behind_a_select_is_not_reused(db: DuckDbConnector) -> None:
    opened = who(db, f"BEGIN TRANSACTION; {WHO}")
    assert who(db) != opened
    seeded = who(db, f"{WHO}, setseed(0.5) AS s")
    assert who(db) != seeded


def test_an_interrupted_statement_fails_and_the_next_runs(db: DuckDbConnector) -> None:
    failed: list[BaseException] = []

    def endless() -> None:
        try:
            db.query(BoundSql("SELECT count(*) FROM range(1000000000000) a, range(1000) b"))
        except BaseException as exc:
            failed.append(exc)

    who(db)  # a pooled cursor: the endless statement takes it
    worker = threading.Thread(target=endless)
    worker.start()
    while worker.is_alive():
        db.interrupt()
        worker.join(0.01)
    assert failed and isinstance(failed[0], ConnectorError)
    assert "interrupt" in str(failed[0]).lower()
    assert db.query(BoundSql("SELECT 1 AS a")).to_pylist() == [{"a": 1}]


def test_closing_closes_the_pooled_cursors(shop: Path, tmp_path: Path) -> None:
    connector = DuckDbConnector("local", policy=POLICY, temp_dir=tmp_path / "tmp", database=shop)
    who(connector)
    connector.close()
    with duckdb.connect(str(shop)) as con:  # the file is no longer held by this process
        con.execute("INSERT INTO orders VALUES (5)")
        assert con.sql("SELECT count(*) FROM orders").fetchall() == [(6,)]


@pytest.mark.parametrize(
    ("sql", "reusable"),
    [
        ("SELECT 1", True),
        ("  with x AS (SELECT 1) SELECT * FROM x;\n", True),
        ("FROM orders", True),
        ("SELECT 1; SELECT 2", False),
        ("BEGIN; SELECT 1", False),
        ("SELECT setseed(0.1)", False),
        ("CREATE TEMP TABLE t AS SELECT 1", False),
        ("-- a comment\nSELECT 1", False),
        ("selection", False),
    ],
)
def test_which_statements_leave_no_state(sql: str, reusable: bool) -> None:
    assert leaves_no_state(sql) is reusable
