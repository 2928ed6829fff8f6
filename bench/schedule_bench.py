"""Schedules fired by three nodes: APScheduler vs Quarry, side by side in one run.

Both systems run at the same time, on the same Postgres, for the same window, with
the same schedules (``--schedules`` jobs firing every second):

* **APScheduler 3** -- three processes, each a ``BackgroundScheduler`` on one shared
  ``SQLAlchemyJobStore`` (the closest it comes to a fleet; its docs say a job store
  must not be shared by schedulers, and this measures what happens if it is). Every
  submission of a job is recorded with its scheduled time (``EVENT_JOB_SUBMITTED``).
* **Quarry** -- three ``quarry driver`` processes on one database, the schedules
  compiled from ``*.schedule.yml`` files (``cron: '* * * * * *'``). Every run a fire
  created is counted (``runs.request_id`` names the fire; runs carry no unique key, so
  a double fire would show as two runs).

For each system: expected fires (schedules x due seconds in the window), duplicates
(extra fires of one due time), misses (due times never fired), and the firing delay
(recorded fire time minus scheduled time) p50/p99. Goal for Quarry: zero duplicates,
zero misses, delay p99 under one tick (``QUARRY_SCHEDULE_TICK_SECONDS``, default 1 s).

    uv sync --group bench
    .venv/bin/python bench/schedule_bench.py [--schedules 20] [--seconds 30]

Needs a Postgres superuser DSN in ``QUARRY_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) to create scratch databases.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ADMIN_DSN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]
NODES = 3


def dsn_for(dbname: str) -> str:
    return f"{ADMIN_DSN.rsplit('/', 1)[0]}/{dbname}"


def sa_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"quarry_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield dsn_for(name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- APScheduler ------------------------------------------------------------------------


def aps_node(dsn: str, name: str) -> None:
    """One APScheduler process on the shared job store (run as a child)."""
    from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    record = psycopg.connect(dsn, autocommit=True)
    lock = threading.Lock()

    def submitted(event: JobSubmissionEvent) -> None:
        with lock:
            for when in event.scheduled_run_times:
                record.execute(
                    "INSERT INTO aps_fires (job_id, scheduled_for, fired_at, node) "
                    "VALUES (%s, %s, clock_timestamp(), %s)",
                    (event.job_id, when, name),
                )

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=sa_url(dsn))}, timezone="UTC"
    )
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start()
    print("READY", flush=True)
    stop.wait()
    scheduler.shutdown(wait=False)


def aps_setup(dsn: str, count: int) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE aps_fires (job_id text, scheduled_for timestamptz, "
            "fired_at timestamptz, node text)"
        )
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=sa_url(dsn))}, timezone="UTC"
    )
    scheduler.start(paused=True)
    for i in range(count):
        scheduler.add_job(
            "time:time",
            CronTrigger(second="*", timezone="UTC"),
            id=f"s{i:02d}",
            replace_existing=True,
        )
    scheduler.shutdown(wait=False)


def aps_results(dsn: str, count: int, start: datetime, end: datetime) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT job_id, scheduled_for, fired_at FROM aps_fires "
            "WHERE scheduled_for >= %s AND scheduled_for < %s",
            (start, end),
        ).fetchall()
    per_due = Counter((job, when) for job, when, _ in rows)
    delays = [(fired - when).total_seconds() for _, when, fired in rows]
    return _summary(count, start, end, per_due, delays)


# -- Quarry ---------------------------------------------------------------------------


def quarry_setup(dsn: str, count: int, root: Path) -> Any:
    from quarry.core.settings import Settings
    from quarry.node.services import build_services

    settings = Settings(
        database_url=sa_url(dsn),
        blob_url=(root / "blobs").as_uri(),
        data_dir=root / "factory",
        global_driver="off",
    )
    svc = build_services(settings)
    ws = root / "ws"
    (ws / "workflows").mkdir(parents=True)
    (ws / "schedules").mkdir()
    (ws / "data").mkdir()
    (ws / "config.yml").write_text(
        "databases:\n  - name: local\n    type: duckdb\n    dataset: data\nmodels: []\n"
    )
    (ws / "workflows" / "noop.workflow.yml").write_text("tasks: []\n")
    return svc, ws


def quarry_compile(svc: Any, ws: Path, count: int) -> None:
    from quarry.factory.local import compile_local

    for i in range(count):
        (ws / "schedules" / f"s{i:02d}.schedule.yml").write_text(
            "target:\n  workflow: workflows/noop.workflow.yml\n"
            "cron: '* * * * * *'\noverlap: queue\n"
        )
    compile_local(svc.engine, svc.store, "local", ws, "bench", data_dir=ws.parent / "factory")


def quarry_results(svc: Any, count: int, start: datetime, end: datetime) -> dict[str, Any]:
    from sqlalchemy import select

    from quarry.scheduling.ticks import fire_key
    from quarry.store.run_tables import runs
    from quarry.store.schedule_tables import schedule_fires, schedules

    with svc.engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(schedules.c.id))]
        made = Counter(
            r.request_id
            for r in conn.execute(select(runs.c.request_id).where(runs.c.origin == "schedule"))
        )
        created = {
            r.request_id: r.created_at
            for r in conn.execute(select(runs.c.request_id, runs.c.created_at))
        }
        fires = list(
            conn.execute(
                select(schedule_fires).where(
                    schedule_fires.c.scheduled_for >= start, schedule_fires.c.scheduled_for < end
                )
            )
        )
    per_due: Counter[tuple[str, datetime]] = Counter()
    t = start
    while t < end:
        for sid in ids:
            n = made.get(fire_key(sid, t), 0)
            if n:
                per_due[(sid, t)] = n
        t += timedelta(seconds=1)
    delays = [
        (created[fire_key(f.schedule_id, f.scheduled_for)] - f.scheduled_for).total_seconds()
        for f in fires
        if fire_key(f.schedule_id, f.scheduled_for) in created
    ]
    return _summary(count, start, end, per_due, delays)


def _summary(
    count: int, start: datetime, end: datetime, per_due: Counter[Any], delays: list[float]
) -> dict[str, Any]:
    seconds = int((end - start).total_seconds())
    expected = count * seconds
    return {
        "expected": expected,
        "fired": sum(per_due.values()),
        "duplicates": sum(n - 1 for n in per_due.values() if n > 1),
        "misses": expected - len(per_due),
        "p50": percentile(delays, 0.50),
        "p99": percentile(delays, 0.99),
    }


# -- orchestration --------------------------------------------------------------------


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--tick", type=float, default=1.0, help="QUARRY_SCHEDULE_TICK_SECONDS")
    opts = parser.parse_args()
    count = opts.schedules
    with (
        scratch_database() as aps_dsn,
        scratch_database() as quarry_dsn,
        tempfile.TemporaryDirectory() as tmp,
    ):
        root = Path(tmp)
        aps_setup(aps_dsn, count)
        svc, ws = quarry_setup(quarry_dsn, count, root)
        procs: list[tuple[Path, subprocess.Popen[bytes], str]] = []
        for i in range(NODES):
            log = root / f"aps{i}.log"
            procs.append(
                (
                    log,
                    spawn([sys.executable, __file__, "--aps-node", aps_dsn, f"aps{i}"], {}, log),
                    "READY",
                )
            )
        for i in range(NODES):
            data = root / f"q{i}"
            data.mkdir()
            env = {
                "QUARRY_DATABASE_URL": sa_url(quarry_dsn),
                "QUARRY_BLOB_URL": (root / "blobs").as_uri(),
                "QUARRY_DATA_DIR": str(data),
                "QUARRY_SCHEDULE_TICK_SECONDS": str(opts.tick),
                "QUARRY_LOG_LEVEL": "WARNING",
                # Nothing drains the runs: lift the per-tenant cap on queued tasks.
                "QUARRY_QUEUE_MAX_QUEUED_PER_TENANT": "0",
            }
            log = root / f"quarry{i}.log"
            procs.append(
                (log, spawn([sys.executable, "-m", "quarry", "driver"], env, log), " ready (tick ")
            )
        try:
            for log, proc, marker in procs:

                def ready(log: Path = log, proc: Any = proc, marker: str = marker) -> bool:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{log.name} exited:\n{log.read_text()}")
                    return marker in log.read_text(errors="replace")

                wait_for(ready, 120, f"{log.name} to start")
            quarry_compile(svc, ws, count)
            now = datetime.now(UTC)
            start = now.replace(microsecond=0) + timedelta(seconds=3)
            end = start + timedelta(seconds=opts.seconds)
            print(
                f"window {start:%H:%M:%S}..{end:%H:%M:%S} UTC, {count} schedules x "
                f"{opts.seconds} s, {NODES} nodes each, both systems at once",
                flush=True,
            )
            wait_for(
                lambda: datetime.now(UTC) > end + timedelta(seconds=3),
                opts.seconds + 60,
                "the window to pass",
            )
        finally:
            for _, proc, _ in procs:
                proc.terminate()
            for _, proc, _ in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        aps = aps_results(aps_dsn, count, start, end)
        quarry = quarry_results(svc, count, start, end)
        svc.close()
    print()
    print(
        f"{'system':<34} {'expected':>8} {'fired':>7} {'dupes':>6} {'misses':>7} "
        f"{'delay p50':>10} {'delay p99':>10}"
    )
    for label, r in (
        (f"APScheduler 3 x{NODES}, shared job store", aps),
        (f"Quarry x{NODES} (tick {opts.tick:g} s)", quarry),
    ):
        print(
            f"{label:<34} {r['expected']:>8} {r['fired']:>7} {r['duplicates']:>6} "
            f"{r['misses']:>7} {r['p50'] * 1000:>8.1f}ms {r['p99'] * 1000:>8.1f}ms"
        )
    print()
    print(
        f"ratio APScheduler/Quarry: fired {aps['fired'] / max(quarry['fired'], 1):.2f}x, "
        f"delay p50 {aps['p50'] / quarry['p50']:.2f}x, p99 {aps['p99'] / quarry['p99']:.2f}x"
    )
    met = quarry["duplicates"] == 0 and quarry["misses"] == 0 and quarry["p99"] < opts.tick
    print(
        f"goal (Quarry: 0 duplicates, 0 misses, p99 < {opts.tick:g} s): "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--aps-node":
        aps_node(sys.argv[2], sys.argv[3])
    else:
        main()
