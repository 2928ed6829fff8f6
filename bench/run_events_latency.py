"""Run events over SSE: how long after a run finishes a follower on *another replica*
hears of it, beside the floor (a bare LISTEN/NOTIFY round trip on the same Postgres).

Two ``quarry serve`` processes share one scratch Postgres database: the executing
replica (in-process worker on) and the following replica (workers off, so it never
executes the run and learns of its end only from the database); ``--in-process``
serves both apps from threads of the bench process instead (one GIL for both
replicas, the worker and the client: slower, kept for comparison). For each of
``--runs`` runs of the demo workspace's ``workflows/monthly_revenue``, the run is
created on the executing replica and followed on the other
(``GET /api/v1/runs/{id}/events``); the delay is from the run's ``finished_at`` (the
executing process's clock, same machine) to the terminal event line arriving at
the client. The follower's safety-net poll is raised to 5 s, so only the push can
explain a short delay.

The floor: one connection LISTENs, another commits ``pg_notify`` with its send time
as payload, ``--runs`` times; the delay is send to receive.

    .venv/bin/python bench/run_events_latency.py [--runs 200] [--in-process]

Before the push (issue #20) the events endpoint polled every 0.2 s: a run's end was
reported ~200 ms late on average. Goal: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from tests.support.processes import (  # noqa: E402
    serve_in_thread,
    start_quarry,
    wait_healthy,
)
from tests.support.run_events import report_delay  # noqa: E402

from queue_throughput import sa_url, scratch_database  # noqa: E402

WS = "/api/v1/workspaces/shop"
SAFETY_NET_POLL_SECONDS = 5.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quarry_delays(dsn: str, runs: int, tmp: Path, *, in_process: bool) -> list[float]:
    import logging

    os.environ.setdefault("QUARRY_AUTH", "open")
    logging.disable(logging.WARNING)  # one INFO line per request would be the bench
    from quarry.api.app import create_app
    from quarry.core.settings import Settings
    from quarry.demo import create_demo_workspace
    from quarry.factory.local import compile_local
    from quarry.node.services import build_services
    from quarry.store.db import create_state_engine
    from quarry.store.migrate import migrate

    url = sa_url(dsn)
    engine = create_state_engine(url)
    migrate(engine)
    engine.dispose()

    def settings(name: str, workers: str) -> Settings:
        return Settings(  # type: ignore[call-arg]
            database_url=url,
            blob_url=f"file://{tmp / 'blobs'}",
            data_dir=tmp / name,
            revision_cache_ttl=0,
            inprocess_workers=workers,
            run_events_poll_seconds=SAFETY_NET_POLL_SECONDS,
        )

    delays: list[float] = []
    with ExitStack() as stack:
        executor = build_services(settings("exec", "on" if in_process else "off"))
        stack.callback(executor.close)
        compile_local(
            executor.engine,
            executor.store,
            "local",
            create_demo_workspace(tmp / "shop"),
            "shop",
        )
        if in_process:
            follower = build_services(settings("follow", "off"))
            stack.callback(follower.close)
            exec_url = stack.enter_context(serve_in_thread(create_app(executor)))
            follow_url = stack.enter_context(serve_in_thread(create_app(follower)))
        else:
            env = {
                "QUARRY_DATABASE_URL": url,
                "QUARRY_BLOB_URL": f"file://{tmp / 'blobs'}",
                "QUARRY_REVISION_CACHE_TTL": "0",
                "QUARRY_RUN_EVENTS_POLL_SECONDS": str(SAFETY_NET_POLL_SECONDS),
                "QUARRY_AUTH": "open",
                "QUARRY_SKIP_MIGRATIONS": "1",
            }
            servers = []
            for name, workers in (("exec", "on"), ("follow", "off")):
                server = start_quarry(
                    ["serve"],
                    {
                        **env,
                        "QUARRY_DATA_DIR": str(tmp / name),
                        "QUARRY_INPROCESS_WORKERS": workers,
                    },
                    tmp / f"{name}.log",
                )
                stack.callback(server.stop)
                servers.append(server)
            for server in servers:
                wait_healthy(server)
            exec_url, follow_url = servers[0].url, servers[1].url
        exec_client = stack.enter_context(httpx.Client(base_url=exec_url, timeout=30))
        follow_client = stack.enter_context(httpx.Client(base_url=follow_url, timeout=30))
        for i in range(runs + 3):
            delay = report_delay(exec_client, follow_client, WS)
            if i >= 3:  # the first runs warm both replicas up
                delays.append(delay)
    return delays


def notify_floor(dsn: str, runs: int) -> list[float]:
    delays: list[float] = []
    with (
        psycopg.connect(dsn, autocommit=True) as listener,
        psycopg.connect(dsn, autocommit=True) as sender,
    ):
        listener.execute("LISTEN bench_floor")
        for _ in range(runs):
            sender.execute("SELECT pg_notify('bench_floor', %s)", (repr(time.time()),))
            for note in listener.notifies(timeout=5, stop_after=1):
                delays.append(time.time() - float(note.payload))
            time.sleep(0.005)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--in-process", action="store_true", help="both replicas in threads")
    args = parser.parse_args()
    with scratch_database() as dsn, tempfile.TemporaryDirectory() as tmp:
        floor = notify_floor(dsn, args.runs)
        delays = quarry_delays(dsn, args.runs, Path(tmp), in_process=args.in_process)
    print(
        f"{args.runs} runs followed on another replica "
        f"({'threads of one process' if args.in_process else 'two quarry serve processes'}); "
        f"{os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print("| path | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
    print("|---|---|---|---|---|---|")
    for name, values in (
        ("run end -> SSE terminal event, other replica", delays),
        ("bare LISTEN/NOTIFY (floor)", floor),
    ):
        ms = [v * 1000 for v in values]
        print(
            f"| {name} | {pct(ms, 0.5):.1f} | {pct(ms, 0.9):.1f} | {pct(ms, 0.99):.1f} "
            f"| {max(ms):.1f} | {statistics.fmean(ms):.1f} |"
        )
    print(f"| ratio p99 (floor / quarry) | | | {pct(floor, 0.99) / pct(delays, 0.99):.2f}x | | |")


if __name__ == "__main__":
    main()
