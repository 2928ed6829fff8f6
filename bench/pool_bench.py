"""What warehouse connection pooling saves a long-lived worker: per-run latency of a
one-statement run on Postgres (127.0.0.1:5432, trust), pooled vs not.

A "run" here is what a worker does per run for one database: open the connector,
run ``SELECT 1``, close the connector (``Connections.close`` at the end of a run).
Without pooling (``QUARRY_WAREHOUSE_POOL_SIZE=0``) that is a new login each time
(TCP, startup, the server-identity check); pooled, a checkout check (one round trip),
the statement, and ``DISCARD ALL`` at the end.

    .venv/bin/python bench/pool_bench.py --runs 300
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from quarry.runtime.connectors import postgres
from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy


def per_run_ms(policy: ConnectorPolicy, runs: int, settings: dict[str, str]) -> list[float]:
    """Milliseconds of each of ``runs`` open/query/close rounds (after 5 warm-ups)."""
    times: list[float] = []
    for i in range(runs + 5):
        started = time.perf_counter()
        db = open_connector("postgres", "bench", {"settings": settings}, policy=policy)
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
    args = parser.parse_args()
    settings = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "dbname": args.dbname}
    local = ConnectorPolicy.local()
    cases = {
        "not pooled (size 0)": dataclasses.replace(local, warehouse_pool_size=0),
        "pooled (size 8)": dataclasses.replace(local, warehouse_pool_size=8),
    }
    for label, policy in cases.items():
        postgres.POOL.close_all()
        times = sorted(per_run_ms(policy, args.runs, settings))
        p95 = times[int(len(times) * 0.95) - 1]
        print(f"{label:22} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms")
    postgres.POOL.close_all()


if __name__ == "__main__":
    main()
