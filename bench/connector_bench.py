"""Rows per second fetched into Arrow: Quarry's connectors vs the raw drivers.

For DuckDB, Postgres (127.0.0.1:5432, trust) and MySQL/MariaDB (127.0.0.1:3306, root):
a table of ``--rows`` rows (an integer, a float, a short text, a timestamp, a
decimal) is read whole, ``--repeat`` times, through

- the raw driver, into Arrow the fastest plain way (DuckDB ``to_arrow_table()``;
  psycopg / PyMySQL ``fetchall()`` then ``pa.Table.from_pylist``-free column arrays);
- Quarry's connector (``Connector.query``), which also types every column.

Prints the median rows/s of each and the ratio (the issue's goal: Quarry >= 90 % of
the raw driver). Creates and drops its own database on each server.

    .venv/bin/python bench/connector_bench.py --rows 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa


def timed(fn: Callable[[], pa.Table], repeat: int, rows: int) -> float:
    """The median rows/s of ``repeat`` runs (after one warm-up run)."""
    fn()
    speeds = []
    for _ in range(repeat):
        started = time.perf_counter()
        table = fn()
        speeds.append(rows / (time.perf_counter() - started))
        assert table.num_rows == rows
    return statistics.median(speeds)


def columns(rows: list[tuple[Any, ...]], width: int) -> list[pa.Array]:
    return [pa.array([row[i] for row in rows]) for i in range(width)]


def duckdb_case(n: int, repeat: int) -> tuple[float, float]:
    import duckdb

    from quarry.runtime.connectors.base import BoundSql
    from quarry.runtime.connectors.duckdb import DuckDbConnector
    from quarry.runtime.connectors.policy import ConnectorPolicy

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        with duckdb.connect(str(path)) as db:
            db.execute(
                f"CREATE TABLE t AS SELECT i AS id, i * 0.5 AS f, 'row ' || i AS s, "
                f"TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND AS ts, "
                f"(i % 1000)::DECIMAL(12, 2) AS d FROM range({n}) r(i)"
            )
        raw = duckdb.connect(str(path), read_only=True)
        connector = DuckDbConnector(
            "bench",
            policy=ConnectorPolicy.local(),
            temp_dir=Path(tmp),
            database=path,
            alias="bench",
            read_only=True,
        )
        try:
            raw_speed = timed(lambda: raw.sql("SELECT * FROM t").to_arrow_table(), repeat, n)
            ours = timed(lambda: connector.query(BoundSql("SELECT * FROM t")), repeat, n)
        finally:
            connector.close()
            raw.close()
    return raw_speed, ours


def postgres_case(n: int, repeat: int) -> tuple[float, float]:
    import psycopg

    from quarry.runtime.connectors.base import BoundSql
    from quarry.runtime.connectors.policy import ConnectorPolicy
    from quarry.runtime.connectors.postgres import PostgresConnector

    name = f"quarry_bench_{uuid.uuid4().hex[:8]}"
    admin: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "dbname": "postgres",
    }
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    info: dict[str, Any] = {**admin, "dbname": name}
    try:
        with psycopg.connect(**info, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE t AS SELECT i AS id, i * 0.5::float8 AS f, 'row ' || i AS s, "
                "TIMESTAMP '2026-01-01' + i * INTERVAL '1 second' AS ts, "
                f"(i % 1000)::numeric(12, 2) AS d FROM generate_series(1, {n}) i"
            )
        raw = psycopg.connect(**info, autocommit=True)
        connector = PostgresConnector("bench", info, policy=ConnectorPolicy.local())

        def raw_fetch() -> pa.Table:
            with raw.cursor() as cur:
                cur.execute("SELECT * FROM t")
                rows = cur.fetchall()
            return pa.Table.from_arrays(columns(rows, 5), names=["id", "f", "s", "ts", "d"])

        try:
            raw_speed = timed(raw_fetch, repeat, n)
            ours = timed(lambda: connector.query(BoundSql("SELECT * FROM t")), repeat, n)
        finally:
            connector.close()
            raw.close()
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return raw_speed, ours


def mysql_case(n: int, repeat: int) -> tuple[float, float]:
    import pymysql

    from quarry.runtime.connectors.base import BoundSql
    from quarry.runtime.connectors.mysql import MysqlConnector
    from quarry.runtime.connectors.policy import ConnectorPolicy

    name = f"quarry_bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"USE `{name}`")  # seq_1_to_N (MariaDB's sequence engine) needs one
            cur.execute(
                f"CREATE TABLE `{name}`.t (id bigint, f double, s varchar(32), ts datetime(6),"
                " d decimal(12, 2))"
            )
            cur.execute(
                f"INSERT INTO `{name}`.t SELECT seq, seq * 0.5, CONCAT('row ', seq),"
                " TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND, seq % 1000"
                f" FROM seq_1_to_{n}"
            )
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 3306,
            "user": "root",
            "database": name,
        }
        raw = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=name)
        connector = MysqlConnector("bench", settings, policy=ConnectorPolicy.local())

        def raw_fetch() -> pa.Table:
            with raw.cursor() as cur:
                cur.execute("SELECT * FROM t")
                rows = cur.fetchall()
            return pa.Table.from_arrays(columns(list(rows), 5), names=["id", "f", "s", "ts", "d"])

        try:
            raw_speed = timed(raw_fetch, repeat, n)
            ours = timed(lambda: connector.query(BoundSql("SELECT * FROM t")), repeat, n)
        finally:
            connector.close()
            raw.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    return raw_speed, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["duckdb", "postgres", "mysql"], action="append")
    args = parser.parse_args()
    cases = {"duckdb": duckdb_case, "postgres": postgres_case, "mysql": mysql_case}
    print(f"{'database':10} {'raw rows/s':>14} {'quarry rows/s':>14} {'ratio':>7}")
    for name, case in cases.items():
        if args.only and name not in args.only:
            continue
        raw_speed, ours = case(args.rows, args.repeat)
        print(f"{name:10} {raw_speed:14,.0f} {ours:14,.0f} {ours / raw_speed:7.0%}")


if __name__ == "__main__":
    main()
