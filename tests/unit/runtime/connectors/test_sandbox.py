"""The DuckDB sandbox on its own: a private read-only snapshot, anchored file names,
and a locked configuration."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.duckdb import DuckDbConnector, anchor_dataset_paths
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.sandbox import RunSandbox


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A revision folder as the blob cache builds it: hard links to read-only blobs."""
    blob = tmp_path / "blobs" / "orders"
    blob.parent.mkdir()
    blob.write_text("id,amount\n1,10\n2,32\n")
    blob.chmod(0o444)
    folder = tmp_path / "datasets" / "rev" / "data"
    (folder / "sub").mkdir(parents=True)
    os.link(blob, folder / "orders.csv")
    os.link(blob, folder / "sub" / "more.csv")
    return folder


def test_snapshot_is_private_read_only_and_removed(shared: Path, tmp_path: Path) -> None:
    sandbox = RunSandbox(tmp_path / "runs")
    snap = sandbox.snapshot(shared)
    assert sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*")) == [
        "orders.csv",
        "sub",
        "sub/more.csv",
    ]
    assert not os.stat(snap).st_mode & 0o222
    if os.access(snap / "orders.csv", os.W_OK):
        # root may write anyway: then the snapshot holds copies, never the shared inode
        assert os.stat(snap / "orders.csv").st_ino != os.stat(shared / "orders.csv").st_ino
    sandbox.close()
    assert not any((tmp_path / "runs").iterdir())


def connector(shared: Path, tmp_path: Path) -> tuple[DuckDbConnector, RunSandbox]:
    sandbox = RunSandbox(tmp_path / "runs")
    db = DuckDbConnector(
        "local",
        policy=ConnectorPolicy(duckdb_threads=1, duckdb_memory_limit="256MB"),
        temp_dir=sandbox.temp_dir("local"),
        search_path=sandbox.snapshot(shared),
    )
    return db, sandbox


def test_files_are_read_by_name_and_nothing_else(shared: Path, tmp_path: Path) -> None:
    db, sandbox = connector(shared, tmp_path)
    try:
        total = db.query(BoundSql("SELECT sum(amount) AS s FROM 'orders.csv'"))
        assert total.to_pylist() == [{"s": 42}]
        both = db.query(BoundSql("SELECT count(*) AS n FROM read_csv('**/*.csv')"))
        assert both.to_pylist() == [{"n": 4}]
        for sql in (
            "SELECT * FROM read_text('/etc/hostname')",
            f"SELECT * FROM read_text('{shared}/orders.csv')",
            "SELECT * FROM read_text('../../etc/hostname')",
            f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
        ):
            with pytest.raises(ConnectorError, match=r"disabled by configuration.*dataset folder"):
                db.query(BoundSql(sql))
        with pytest.raises(ConnectorError, match="locked"):
            db.query(BoundSql("SET enable_external_access = true"))
        assert not (tmp_path / "out.csv").exists()
    finally:
        db.close()
        sandbox.close()
    digest = hashlib.sha256((shared / "orders.csv").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(b"id,amount\n1,10\n2,32\n").hexdigest()


def test_anchoring_touches_only_literals_naming_dataset_files(shared: Path) -> None:
    sql = (
        "SELECT 'orders.csv' AS a, 'missing.csv' AS b, 'it''s' AS c FROM 'orders.csv' "
        "JOIN read_csv('sub/*.csv') USING (id) WHERE x ~ '.*' -- 'orders.csv'"
    )
    anchored = anchor_dataset_paths(sql, shared)
    assert anchored.count(f"'{shared}/orders.csv'") == 2
    assert f"'{shared}/sub/*.csv'" in anchored
    assert "'missing.csv'" in anchored and "'it''s'" in anchored and "'.*'" in anchored
    assert anchored.endswith("-- 'orders.csv'")
    assert anchor_dataset_paths("SELECT '../orders.csv', '/etc/passwd'", shared) == (
        "SELECT '../orders.csv', '/etc/passwd'"
    )


def test_quoted_names_of_dataset_files_are_anchored(shared: Path, tmp_path: Path) -> None:
    """Generated SQL (semantic queries) names files as quoted identifiers."""
    sql = 'SELECT "orders".amount FROM "orders.csv" AS "orders", "sub" AS s, "no.csv"'
    anchored = anchor_dataset_paths(sql, shared)
    assert f'FROM "{shared}/orders.csv" AS "orders"' in anchored
    assert '"sub" AS s' in anchored and '"no.csv"' in anchored
    db, sandbox = connector(shared, tmp_path)
    try:
        got = db.query(BoundSql('SELECT sum("o".amount) AS s FROM "orders.csv" AS "o"'))
        assert got.to_pylist() == [{"s": 42}]
    finally:
        db.close()
        sandbox.close()


def test_a_database_file_is_attached_read_only(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE sales AS SELECT * FROM range(3) t(n)")
    sandbox = RunSandbox(tmp_path / "runs")
    db = DuckDbConnector(
        "shop",
        policy=ConnectorPolicy(),
        temp_dir=sandbox.temp_dir("shop"),
        database=path,
        alias="shop",
        read_only=True,
    )
    try:
        assert db.query(BoundSql("SELECT count(*) AS n FROM sales")).to_pylist() == [{"n": 3}]
        with pytest.raises(ConnectorError, match="read-only"):
            db.query(BoundSql("INSERT INTO sales VALUES (9)"))
        with pytest.raises(ConnectorError, match="disabled by configuration"):
            db.query(BoundSql(f"ATTACH '{tmp_path}/other.duckdb' AS other"))
        assert not (tmp_path / "other.duckdb").exists()
    finally:
        db.close()
        sandbox.close()


def test_run_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    child = subprocess.Popen(["true"])
    child.wait()
    stale = parent / f"{child.pid}-stale"
    (stale / "data" / "x").mkdir(parents=True)
    (stale / "data" / "x").chmod(0o555)
    live = parent / f"{os.getppid()}-live"
    live.mkdir()
    sandbox = RunSandbox(parent)
    mine = sandbox.root
    assert not stale.exists()
    assert live.exists() and mine.exists()
    sandbox.close()
