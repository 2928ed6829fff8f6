"""Queue latency: from enqueue to the handler starting, with idle workers on LISTEN.

W worker processes (``python -m quarry.runtime.queue.main``, default 4) sit idle,
woken only by ``NOTIFY`` (their poll interval is 10 s, so a poll cannot be what wakes
them). One task at a time is enqueued; its payload carries the wall-clock time just
before ``enqueue()`` was called, and the handler reports ``now - then`` when it
starts. The next task is enqueued 5-20 ms after the previous one started, so every
task meets idle workers. Reports p50, p90, p99 and max.

    .venv/bin/python bench/queue_latency.py [--tasks 1000] [--workers 4] [--batch 10]

``--batch N`` runs the batched worker (``runtime/queue/batch.py``) instead of the
default one: an idle batched worker claims whatever one statement finds (here one
task), so its latency should match the default worker's.

Needs a Postgres superuser DSN in ``QUARRY_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) to create a scratch database.
"""

from __future__ import annotations

import argparse
import os
import queue as stdqueue
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from quarry.runtime.queue import Task, open_queue
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from queue_throughput import sa_url, scratch_database  # noqa: E402


def started(task: Task) -> object:
    """The handler the worker processes run: report the enqueue-to-start latency."""
    latency_ms = (time.time() - float(task.payload["t0"])) * 1000
    print(f"LAT {task.id} {latency_ms:.3f}", flush=True)
    return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="the workers' --batch (default 1)")
    args = parser.parse_args()

    with scratch_database() as dsn:
        url = sa_url(dsn)
        engine = create_state_engine(url)
        migrate(engine)
        queue = open_queue(engine)
        lines: stdqueue.Queue[str] = stdqueue.Queue()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "quarry.runtime.queue.main",
                    "--database-url",
                    url,
                    "--handler",
                    "queue_latency:started",
                    "--poll",
                    "10",
                    "--owner",
                    f"lat-{i}",
                    "--batch",
                    str(args.batch),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(args.workers)
        ]

        def pump(p: subprocess.Popen[str]) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                lines.put(line.strip())

        pumps = [threading.Thread(target=pump, args=(p,), daemon=True) for p in procs]
        for t in pumps:
            t.start()
        try:
            ready = 0
            while ready < args.workers:
                if lines.get(timeout=30).startswith("READY"):
                    ready += 1
            # A first task warms every worker's statement cache, then measure.
            samples: list[float] = []
            for i in range(args.tasks + 1):
                time.sleep(random.uniform(0.005, 0.02))
                enq = queue.enqueue("bench", "ping", {"t0": time.time()})
                while True:
                    line = lines.get(timeout=15)
                    if line.startswith(f"LAT {enq.id} "):
                        break
                if i:
                    samples.append(float(line.split()[2]))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
                if p.stdout is not None:
                    p.stdout.close()
            engine.dispose()

    print(
        f"{args.tasks} tasks, {args.workers} idle worker processes (batch {args.batch}), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"enqueue -> start latency: p50 {percentile(samples, 50):.1f} ms, "
        f"p90 {percentile(samples, 90):.1f} ms, p99 {percentile(samples, 99):.1f} ms, "
        f"max {max(samples):.1f} ms, mean {statistics.fmean(samples):.1f} ms"
    )


if __name__ == "__main__":
    main()
