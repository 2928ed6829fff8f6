"""What warehouse connection pooling saves a long-lived worker: per-run latency of a
one-statement run on Postgres (127.0.0.1:5432, trust) and MariaDB/MySQL
(127.0.0.1:3306, root without a password), pooled vs not.

A "run" here is what a worker does per run for one database: open the connector,
run ``SELECT 1``, close the connector (``Connections.close`` at the end of a run).
Without pooling (``QUARRY_WAREHOUSE_POOL_SIZE=0``) that is a new login each time
(TCP, startup, the server-identity check); pooled, a checkout check (one round trip),
the statement, and ``DISCARD ALL`` at the end. MySQL: a new login is TCP, the
handshake and authentication, ``SET NAMES`` and the UTC set-up; pooled, ``COM_PING``,
the statement, and at the end ``COM_RESET_CONNECTION``, the set-up again and the
``DATABASE(), CURRENT_ROLE()`` check (three round trips).

    .venv/bin/python bench/pool_bench.py --runs 300 [--only postgres|mysql]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

from quarry.runtime.connectors import mysql, postgres
from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy


def per_run_ms(
    kind: str, policy: ConnectorPolicy, runs: int, settings: dict[str, Any]
) -> list[float]:
    """Milliseconds of each of ``runs`` open/query/close rounds (after 5 warm-ups)."""
    times: list[float] = []
    for i in range(runs + 5):
        started = time.perf_counter()
        db = open_connector(kind, "bench", {"settings": settings}, policy=policy)
        try:
            db.query(BoundSql("SELECT 1"))
        finally:
            db.close()
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--mysql-database", default="mysql")
    parser.add_argument("--only", choices=["postgres", "mysql"])
    args = parser.parse_args()
    databases: dict[str, tuple[dict[str, Any], Any]] = {
        "postgres": (
            {"host": "127.0.0.1", "port": "5432", "user": "postgres", "dbname": args.dbname},
            postgres.POOL,
        ),
        "mysql": (
            {"host": "127.0.0.1", "port": 3306, "user": "root", "database": args.mysql_database},
            mysql.POOL,
        ),
    }
    local = ConnectorPolicy.local()
    cases = {
        "not pooled (size 0)": dataclasses.replace(local, warehouse_pool_size=0),
        "pooled (size 8)": dataclasses.replace(local, warehouse_pool_size=8),
    }
    for kind, (settings, pool) in databases.items():
        if args.only not in (None, kind):
            continue
        for label, policy in cases.items():
            pool.close_all()
            times = sorted(per_run_ms(kind, policy, args.runs, settings))
            p95 = times[int(len(times) * 0.95) - 1]
            print(
                f"{kind:9} {label:22} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms"
            )
        pool.close_all()


if __name__ == "__main__":
    main()
