"""Serve's replica-routed reads against the primary alone vs primary + read replica,
and the replica's lag under write load (issue #22, docs/capacity.md "Read replicas").

A private primary cluster and a streaming hot standby of it (``pg_basebackup -R``,
tests/support/replica_pg.py) on this machine; one compiled workspace with ``--runs``
queued runs. Then, for each mode, one ``quarry serve --role serve`` process:

* ``primary``: ``QUARRY_DATABASE_URL`` only;
* ``replica``: plus ``QUARRY_DATABASE_READ_URL`` naming the standby.

``--clients`` threads each GET the run history (``/api/v1/workspaces/ws/runs``,
50 per page) as fast as answered for ``--seconds``; reported: reads/s, p50/p99, and
the transactions each server committed per read (``pg_stat_database.xact_commit``
of the state database on the primary and on the standby: where the reads went).

Lag: ``--writers`` threads create runs through serve (``POST .../runs``, three
commits each) for ``--seconds`` while the primary's ``pg_stat_replication`` is
sampled every 50 ms: ``replay_lag`` (time) and the WAL bytes not yet replayed.

Everything shares this machine's cores, so a second Postgres is *not* more CPU here:
what transfers is where the reads' work lands (the primary's share), not the
absolute rate.

    .venv/bin/python bench/read_replica_bench.py [--runs 2000] [--clients 8] [--seconds 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support.private_pg import private_cluster  # noqa: E402
from tests.support.processes import quarry_process  # noqa: E402
from tests.support.replica_pg import Replica, streaming_replica  # noqa: E402
from tests.support.warehouse import warehouse_workspace  # noqa: E402

from quarry.core.settings import Settings  # noqa: E402
from quarry.factory.local import compile_local  # noqa: E402
from quarry.node.services import build_services  # noqa: E402
from quarry.runtime.runs.service import RunRequest, create_runs  # noqa: E402
from quarry.store.db import create_state_engine  # noqa: E402
from quarry.store.migrate import migrate  # noqa: E402

WORKFLOW = (
    "tasks:\n  - name: one\n    type: execute_sql\n    database: warehouse\n"
    "    sql_query: select 1\n"
)


def _commits(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select xact_commit from pg_stat_database where datname = 'quarry'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _hammer(url: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def client() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                response = http.get(f"{url}/api/v1/workspaces/ws/runs?limit=50")
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return latencies


def _reads(mode: str, env: dict[str, str], replica: Replica, args: Any, tmp: Path) -> None:
    with quarry_process(["serve", "--role", "serve"], env, tmp / f"serve-{mode}.log") as serve:
        _hammer(serve.url, 2, 2.0)  # warm up pools and caches
        before = (_commits(replica.primary.dsn()), _commits(replica.dsn()))
        t0 = time.monotonic()
        latencies = _hammer(serve.url, args.clients, args.seconds)
        wall = time.monotonic() - t0
        after = (_commits(replica.primary.dsn()), _commits(replica.dsn()))
    n = len(latencies)
    print(
        f"{mode:8s} reads {n:6d}  {n / wall:7.1f}/s  p50 {_pct(latencies, 0.5) * 1000:6.1f} ms"
        f"  p99 {_pct(latencies, 0.99) * 1000:6.1f} ms  commits/read primary "
        f"{(after[0] - before[0]) / n:.2f} replica {(after[1] - before[1]) / n:.2f}",
        flush=True,
    )


def _lag(env: dict[str, str], replica: Replica, args: Any, tmp: Path) -> None:
    with quarry_process(["serve", "--role", "serve"], env, tmp / "serve-lag.log") as serve:
        stop = time.monotonic() + args.seconds
        created = [0]
        lock = threading.Lock()

        def writer() -> None:
            with httpx.Client(timeout=30) as http:
                while time.monotonic() < stop:
                    response = http.post(
                        f"{serve.url}/api/v1/workspaces/ws/runs", json={"name": "workflows/one"}
                    )
                    assert response.status_code == 202, response.text
                    with lock:
                        created[0] += 1

        threads = [threading.Thread(target=writer) for _ in range(args.writers)]
        for t in threads:
            t.start()
        lags: list[float] = []
        behind: list[int] = []
        with psycopg.connect(replica.primary.dsn(), autocommit=True) as conn:
            while time.monotonic() < stop:
                row = conn.execute(
                    "select coalesce(extract(epoch from replay_lag), 0),"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
                    " from pg_stat_replication"
                ).fetchone()
                if row is not None:
                    lags.append(float(row[0]))
                    behind.append(int(row[1]))
                time.sleep(0.05)  # sampling period, not synchronisation
        for t in threads:
            t.join()
    print(
        f"lag      {args.writers} writers: {created[0] / args.seconds:6.1f} runs/s created;"
        f" replay_lag p50 {_pct(lags, 0.5) * 1000:.1f} ms p99 {_pct(lags, 0.99) * 1000:.1f} ms"
        f" max {max(lags) * 1000:.1f} ms; WAL behind p50 {_pct(behind, 0.5):.0f} B"
        f" p99 {_pct(behind, 0.99):.0f} B max {max(behind)} B ({len(lags)} samples)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2, help="primary/replica pairs, alternated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quarry-replica-bench-") as scratch:
        tmp = Path(scratch)
        with private_cluster() as primary:
            url = primary.create_database("quarry")
            engine = create_state_engine(url)
            migrate(engine)
            engine.dispose()
            blob = (tmp / "blobs").as_uri()
            settings = Settings(
                database_url=url, blob_url=blob, data_dir=tmp, queue_max_queued_per_tenant=0
            )
            svc = build_services(settings)
            try:
                root = warehouse_workspace(tmp / "ws", "warehouse_unused", {"one": WORKFLOW})
                compile_local(svc.engine, svc.store, "local", root, "ws")
                ws = svc.catalog.workspace("local", "ws", fresh=True)
                for start in range(0, args.runs, 500):
                    count = min(500, args.runs - start)
                    create_runs(svc, ws, [RunRequest("workflow", "workflows/one", {})] * count)
            finally:
                svc.close()
            with streaming_replica(primary) as replica:
                base = {
                    "QUARRY_DATABASE_URL": url,
                    "QUARRY_BLOB_URL": blob,
                    "QUARRY_AUTH": "open",
                    "QUARRY_SKIP_MIGRATIONS": "1",
                    "QUARRY_DATA_DIR": str(tmp / "serve"),
                    "QUARRY_QUEUE_MAX_QUEUED_PER_TENANT": "0",
                }
                with_replica = {**base, "QUARRY_DATABASE_READ_URL": replica.url("quarry")}
                print(f"{args.runs} runs, {args.clients} clients, {args.seconds:.0f} s per mode")
                for _ in range(args.rounds):
                    _reads("primary", base, replica, args, tmp)
                    _reads("replica", with_replica, replica, args, tmp)
                _lag(with_replica, replica, args, tmp)


if __name__ == "__main__":
    main()
