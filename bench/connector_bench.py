"""Rows per second fetched into Arrow: Quarry's connectors vs the raw drivers.

For DuckDB, Postgres (127.0.0.1:5432, trust) and MySQL/MariaDB (127.0.0.1:3306, root):
a table of ``--rows`` rows (an integer, a float, a short text, a timestamp, a
decimal) is read whole, ``--repeat`` times, through

- the raw driver, into Arrow the fastest plain way (DuckDB ``to_arrow_table()``;
  psycopg / PyMySQL ``fetchall()`` then ``pa.Table.from_pylist``-free column arrays);
- Quarry's connector (``Connector.query``), which also types every column.

Each round reads once through each, back to back, the order alternating. Prints the
median rows/s of each, the median of the rounds' ratios and the worst round's (the
issue's goal: Quarry >= 90 % of the raw driver). Creates and drops its own database on each server.

    .venv/bin/python bench/connector_bench.py --rows 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Paired:
    raw: float
    """Median rows/s of the raw driver."""
    ours: float
    """Median rows/s through Quarry's connector."""
    ratios: list[float]
    """Quarry / raw of each round (the two reads of a round run back to back)."""


def paired(
    raw: Callable[[], pa.Table], ours: Callable[[], pa.Table], repeat: int, rows: int
) -> Paired:
    """``repeat`` rounds after one warm-up of each; in each round the raw driver and
    Quarry read back to back, who goes first alternating, so a burst of load on the
    machine hits both alike."""
    raw()
    ours()
    raw_speeds: list[float] = []
    our_speeds: list[float] = []
    for round_ in range(repeat):
        order = [(raw, raw_speeds), (ours, our_speeds)]
        for fn, speeds in order if round_ % 2 == 0 else reversed(order):
            started = time.perf_counter()
            table = fn()
            speeds.append(rows / (time.perf_counter() - started))
            assert table.num_rows == rows
    ratios = [o / r for o, r in zip(our_speeds, raw_speeds, strict=True)]
    return Paired(statistics.median(raw_speeds), statistics.median(our_speeds), ratios)


def columns(rows: list[tuple[Any, ...]], width: int) -> list[pa.Array]:
    return [pa.array([row[i] for row in rows]) for i in range(width)]


def duckdb_case(n: int, repeat: int) -> Paired:
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
            result = paired(
                lambda: raw.sql("SELECT * FROM t").to_arrow_table(),
                lambda: connector.query(BoundSql("SELECT * FROM t")),
                repeat,
                n,
            )
        finally:
            connector.close()
            raw.close()
    return result


def postgres_case(n: int, repeat: int) -> Paired:
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
            result = paired(
                raw_fetch, lambda: connector.query(BoundSql("SELECT * FROM t")), repeat, n
            )
        finally:
            connector.close()
            raw.close()
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result


def mysql_case(n: int, repeat: int) -> Paired:
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
            result = paired(
                raw_fetch, lambda: connector.query(BoundSql("SELECT * FROM t")), repeat, n
            )
        finally:
            connector.close()
            raw.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["duckdb", "postgres", "mysql"], action="append")
    args = parser.parse_args()
    cases = {"duckdb": duckdb_case, "postgres": postgres_case, "mysql": mysql_case}
    print(f"load average {os.getloadavg()[0]:.2f}, {args.rows:,} rows, {args.repeat} rounds")
    print(
        f"{'database':10} {'raw rows/s':>14} {'quarry rows/s':>14} "
        f"{'ratio (median round)':>21} {'worst round':>12}"
    )
    for name, case in cases.items():
        if args.only and name not in args.only:
            continue
        result = case(args.rows, args.repeat)
        print(
            f"{name:10} {result.raw:14,.0f} {result.ours:14,.0f} "
            f"{statistics.median(result.ratios):21.0%} {min(result.ratios):12.0%}"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
