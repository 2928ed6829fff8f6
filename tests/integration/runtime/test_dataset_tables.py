"""DuckDB ``dataset:`` folders: each CSV/Parquet file is also a table named as Oxy
names it, a view over the file inside the sandboxed run snapshot."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.dataset_tables import dataset_tables, slugify
from quarry.runtime.connectors.duckdb import DuckDbConnector
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.sandbox import RunSandbox


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "oxymart.csv").write_text("store,sales\nA,10\nB,32\nA,5\n")
    (data / "Order Items.CSV").write_text("id,qty\n1,2\n2,3\n")
    # a stem with both formats: the Parquet file is the table
    (data / "stock.csv").write_text("x\n1\n")
    pq.write_table(pa.table({"x": [7, 8, 9]}), data / "stock.parquet")
    (data / "nested" / "deep.csv").write_text("y\n1\n")  # sub-folders are not tables
    (data / "notes.txt").write_text("not a table")
    (data / "broken.parquet").write_bytes(b"not parquet at all")
    return data


def test_table_names_follow_oxy(folder: Path) -> None:
    assert slugify("Order Items") == "order_items"
    assert slugify("sales-2024.v2") == "sales_2024_v2"
    assert slugify("Café") == "cafe"
    tables = dataset_tables(folder)
    assert sorted(tables) == ["broken", "order_items", "oxymart", "stock"]
    assert tables["stock"].name == "stock.parquet"


def _connector(folder: Path, tmp_path: Path) -> tuple[DuckDbConnector, RunSandbox]:
    sandbox = RunSandbox(tmp_path / "runs")
    db = DuckDbConnector(
        "local",
        policy=ConnectorPolicy(duckdb_threads=1, duckdb_memory_limit="256MB"),
        temp_dir=sandbox.temp_dir("local"),
        search_path=sandbox.snapshot(folder),
    )
    return db, sandbox


def _rows(db: DuckDbConnector, sql: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = db.query(BoundSql(sql)).to_pylist()
    return rows


def test_files_are_tables_inside_the_sandbox(folder: Path, tmp_path: Path) -> None:
    db, sandbox = _connector(folder, tmp_path)
    try:
        by_table = _rows(db, "SELECT store, sum(sales) AS s FROM oxymart GROUP BY 1 ORDER BY 1")
        by_path = _rows(
            db, "SELECT store, sum(sales) AS s FROM 'oxymart.csv' GROUP BY 1 ORDER BY 1"
        )
        direct = duckdb.execute(
            f"SELECT store, sum(sales) AS s FROM '{folder / 'oxymart.csv'}' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [(r["store"], r["s"]) for r in by_table] == direct
        assert by_table == by_path == [{"store": "A", "s": 15}, {"store": "B", "s": 32}]
        assert _rows(db, "SELECT sum(qty) AS q FROM order_items") == [{"q": 5}]
        assert _rows(db, "SELECT sum(x) AS x FROM stock") == [{"x": 24}]
        # views, not copies: nothing was loaded into a table
        kinds = _rows(db, "SELECT table_name, table_type FROM information_schema.tables")
        assert {r["table_type"] for r in kinds} == {"VIEW"}
        with pytest.raises(ConnectorError, match="deep"):
            db.query(BoundSql("SELECT * FROM deep"))  # sub-folder files are not tables
        with pytest.raises(ConnectorError, match="broken"):
            db.query(BoundSql("SELECT * FROM broken"))  # unreadable: no view, the rest works
        # the sandbox still holds: nothing outside the snapshot can be read
        outside = tmp_path / "outside.csv"
        outside.write_text("secret\n1\n")
        with pytest.raises(ConnectorError):
            db.query(BoundSql(f"SELECT * FROM '{outside}'"))
        with pytest.raises(ConnectorError):
            db.query(BoundSql("CREATE VIEW leak AS SELECT * FROM read_csv('/etc/passwd')"))
    finally:
        db.close()
        sandbox.close()


def test_views_read_the_file_when_queried(folder: Path, tmp_path: Path) -> None:
    """A view is bound to its file: a changed file is seen by the next query (no copy)."""
    db, sandbox = _connector(folder, tmp_path)
    try:
        snapshot_file = next((tmp_path / "runs").rglob("oxymart.csv"))
        assert _rows(db, "SELECT count(*) AS n FROM oxymart") == [{"n": 3}]
        if snapshot_file.stat().st_nlink == 1:  # a private copy: safe to change it
            snapshot_file.chmod(0o644)
            snapshot_file.write_text("store,sales\nZ,1\n")
            assert _rows(db, "SELECT count(*) AS n FROM oxymart") == [{"n": 1}]
    finally:
        db.close()
        sandbox.close()
