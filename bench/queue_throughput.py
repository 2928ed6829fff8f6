"""Queue throughput: Quarry's task queue side by side with pgqueuer and procrastinate.

Every system runs the way its own documentation recommends, on the same Postgres, in
a fresh database per measurement:

- **pgqueuer** (``PGQ_CONFIG``): the asyncpg driver, ``QueueManager.run()`` -- its
  normal continuous worker loop -- with its default ``batch_size=10`` (its completions
  are buffered and flushed in batches), an ``async`` no-op entrypoint; bulk enqueue is
  ``Queries.enqueue`` with lists.
- **procrastinate** (``PRO_CONFIG``): ``App.run_worker_async()`` (its worker, default
  concurrency 1, listening for notifications) on its psycopg connector; bulk enqueue
  is ``Task.batch_defer_async``.
- **quarry**: ``Worker`` (what ``quarry worker`` runs with
  ``QUARRY_AGENT_TURN_SLOTS=1``; ``Worker.run()``: one task at a time, listening
  for ``NOTIFY``, the reaper on); **quarry_batch**: the
  batched worker (``--batch 10``, ``runtime/queue/batch.py``); **quarry_slots**: the
  concurrent worker ``quarry worker`` runs by default (``ConcurrentWorker``, 256
  slots) with every task light, as it runs agent turns; **quarry_runs**: the same
  worker with no task light, as it runs workflow runs (one at a time, one claim per
  statement); **quarry_sync**
  (optional): the default worker waiting for the WAL flush on every write. Bulk
  enqueue is ``TaskQueue.enqueue_many``.

Each round, for each W in ``--workers`` and each system (the order rotated per round):

1. **bulk enqueue** -- N no-op tasks in chunks of 1,000, one call per chunk;
2. **drain** -- W worker processes, started and connected beforehand, enter their
   normal loop together and run the N queued tasks; timed from the first handler
   start (so no system's loop start-up counts) to the last completion. Quarry's end
   is the moment its last completion *write* returned; pgqueuer's and
   procrastinate's end is their last handler run (their completion writes come
   later, pgqueuer's buffered): this favours the peers;
3. **end to end** -- the same W workers now idle in their loop (listening); a producer
   enqueues N more in chunks of 100 (each system's bulk API) and the clock runs from
   the first enqueue to the last completion (as in 2);
4. at W=1 only, **latency** -- 50 single enqueues one after another, each timed from
   the enqueue call to the handler starting in the worker (p50 / p99);

and once per round per system, **single enqueue**: ``--single`` tasks, one call (one
transaction) each, with each system's ordinary single-task API on one connection.

Tables: medians over rounds, ratios to each peer (median), and the worst round's
ratio (each round paired with the same round of the peer).

    .venv/bin/python bench/queue_throughput.py [--tasks 3000] [--workers 1 2 4] [--repeat 3]

Needs a Postgres superuser DSN in ``QUARRY_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) to create scratch databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg

ADMIN_DSN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEMS = (
    "quarry",
    "quarry_batch",
    "quarry_slots",
    "quarry_runs",
    "pgqueuer",
    "procrastinate",
    "quarry_sync",
)
DEFAULT_SYSTEMS = ["quarry", "quarry_batch", "pgqueuer", "procrastinate"]
QUARRY_VARIANTS = ("quarry", "quarry_batch", "quarry_slots", "quarry_runs", "quarry_sync")
PEERS = ("pgqueuer", "procrastinate")
BATCH = [10]  # --batch, for quarry_batch
BULK_CHUNK = 1000
E2E_CHUNK = 100
LATENCY_SAMPLES = 50
PGQ_CONFIG = "asyncpg driver, QueueManager.run() continuous loop, batch_size=10 (default)"
PRO_CONFIG = "psycopg connector, run_worker_async() (concurrency 1, listen_notify on)"


def dsn_for(dbname: str) -> str:
    return f"{ADMIN_DSN.rsplit('/', 1)[0]}/{dbname}"


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


def sa_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


# -- producers (parent process) ---------------------------------------------------------


class Producer:
    """One system's enqueue side on one connection."""

    def single(self, start: int, n: int) -> None:
        raise NotImplementedError

    def bulk(self, start: int, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class QuarryProducer(Producer):
    def __init__(self, dsn: str) -> None:
        from quarry.runtime.queue import open_queue
        from quarry.store.db import create_state_engine
        from quarry.store.queue.port import NewTask

        self.new_task = NewTask
        self.engine = create_state_engine(sa_url(dsn), pool_size=2)
        self.queue = open_queue(self.engine)
        self._pin = self.queue.pinned()  # one connection, as the others hold
        self._pin.__enter__()

    def single(self, start: int, n: int) -> None:
        for i in range(start, start + n):
            self.queue.enqueue("bench", "noop", {"i": i})

    def bulk(self, start: int, n: int) -> None:
        self.queue.enqueue_many(
            [self.new_task("bench", "noop", {"i": i}) for i in range(start, start + n)]
        )

    def close(self) -> None:
        self._pin.__exit__(None, None, None)
        self.engine.dispose()


class PgqProducer(Producer):
    def __init__(self, dsn: str) -> None:
        import asyncpg
        from pgqueuer import Queries

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(dsn))
        self.queries = Queries.from_asyncpg_connection(self.conn)

    def single(self, start: int, n: int) -> None:
        async def run() -> None:
            for i in range(start, start + n):
                await self.queries.enqueue("noop", str(i).encode())

        self.loop.run_until_complete(run())

    def bulk(self, start: int, n: int) -> None:
        self.loop.run_until_complete(
            self.queries.enqueue(
                ["noop"] * n, [str(i).encode() for i in range(start, start + n)], [0] * n
            )
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


class ProProducer(Producer):
    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.app: Any = _procrastinate_app(dsn)
        self.loop.run_until_complete(self.app.open_async())
        self.task = self.app.tasks["noop"]

    def single(self, start: int, n: int) -> None:
        async def run() -> None:
            for i in range(start, start + n):
                await self.task.defer_async(i=i)

        self.loop.run_until_complete(run())

    def bulk(self, start: int, n: int) -> None:
        self.loop.run_until_complete(
            self.task.batch_defer_async(*({"i": i} for i in range(start, start + n)))
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.app.close_async())
        self.loop.close()


def producer_for(system: str, dsn: str) -> Producer:
    if system in QUARRY_VARIANTS:
        return QuarryProducer(dsn)
    return PgqProducer(dsn) if system == "pgqueuer" else ProProducer(dsn)


def _procrastinate_app(dsn: str) -> Any:
    import logging

    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.ERROR)

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    def noop(i: int) -> None:
        Trace.handled()

    return app


def setup(system: str, dsn: str) -> None:
    if system in QUARRY_VARIANTS:
        from quarry.store.db import create_state_engine
        from quarry.store.migrate import migrate

        engine = create_state_engine(sa_url(dsn))
        migrate(engine)
        engine.dispose()
    elif system == "pgqueuer":
        import asyncpg
        from pgqueuer import Queries

        async def install() -> None:
            conn = await asyncpg.connect(dsn)
            await Queries.from_asyncpg_connection(conn).install()
            await conn.close()

        asyncio.run(install())
    else:

        async def apply() -> None:
            app = _procrastinate_app(dsn)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(apply())


DONE_SQL = {
    "quarry": "SELECT count(*) FROM tasks WHERE state = 'succeeded'",
    "pgqueuer": "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
}


def done_sql(system: str) -> str:
    return DONE_SQL["quarry" if system in QUARRY_VARIANTS else system]


# -- child process: one worker in its normal loop ------------------------------------


class Trace:
    """What the child reports: when it last finished a task, and (when tracing) when
    each handler started."""

    first = 0.0
    last = 0.0
    count = 0
    tracing = False
    lock = threading.Lock()

    @classmethod
    def started(cls) -> float:
        now = time.time()
        if not cls.first:
            cls.first = now
        if cls.tracing:
            print(f"H {now:.6f}", flush=True)
        return now

    @classmethod
    def handled(cls) -> None:
        now = cls.started()
        with cls.lock:
            cls.last = now
            cls.count += 1


def quarry_child(dsn: str, gate: threading.Event, stop: threading.Event, variant: str) -> None:
    from quarry.runtime.queue import open_queue
    from quarry.runtime.queue.batch import make_worker
    from quarry.store.db import create_state_engine

    engine = create_state_engine(sa_url(dsn), pool_size=2)
    queue = open_queue(engine)

    # The end of a task is the return of the write that recorded it, not the handler.
    def recorded(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            with Trace.lock:
                Trace.last = time.time()
            return result

        return wrapper

    for name in ("complete", "complete_and_claim", "complete_many", "complete_many_and_claim"):
        setattr(queue, name, recorded(getattr(queue, name)))

    def handler(task: Any) -> None:
        Trace.started()

    worker: Any
    if variant in ("quarry_slots", "quarry_runs"):
        from quarry.runtime.queue.concurrent import ConcurrentWorker

        # What `quarry worker` runs by default (QUARRY_AGENT_TURN_SLOTS=256): light
        # tasks (agent turns there; every no-op for quarry_slots) run side by side,
        # claimed a group per statement, their successes written several per
        # statement; tasks that are not light (workflow runs; every no-op for
        # quarry_runs) run one at a time.
        light = variant == "quarry_slots"
        worker = ConcurrentWorker(
            queue, handler, slots=256, light=lambda _task: light, async_commit=True
        )
    else:
        worker = make_worker(
            queue,
            handler,
            batch_size=BATCH[0] if variant == "quarry_batch" else 1,
            async_commit=variant != "quarry_sync",
        )

    def ready() -> None:  # listening and connected: wait for the start signal
        print("READY", flush=True)
        gate.wait()

    thread = threading.Thread(target=worker.run, kwargs={"on_ready": ready}, daemon=True)
    thread.start()
    stop.wait()
    worker.request_stop()
    thread.join(30)
    engine.dispose()


def pgqueuer_child(dsn: str, gate: threading.Event, stop: threading.Event) -> None:
    import asyncpg
    from pgqueuer import Queries, QueueManager
    from pgqueuer.models import Job

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries.from_asyncpg_connection(conn))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            Trace.handled()

        loop = asyncio.get_running_loop()
        print("READY", flush=True)
        await loop.run_in_executor(None, gate.wait)
        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(qm.shutdown.set)),
            daemon=True,
        ).start()
        await qm.run()
        await conn.close()

    asyncio.run(main())


def procrastinate_child(dsn: str, gate: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        app = _procrastinate_app(dsn)
        async with app.open_async():
            loop = asyncio.get_running_loop()
            print("READY", flush=True)
            await loop.run_in_executor(None, gate.wait)
            worker = asyncio.ensure_future(app.run_worker_async(install_signal_handlers=False))
            threading.Thread(
                target=lambda: (stop.wait(), loop.call_soon_threadsafe(worker.cancel)),
                daemon=True,
            ).start()
            with suppress(asyncio.CancelledError):
                await worker

    asyncio.run(main())


def child(system: str, dsn: str) -> None:
    """Commands on stdin: GO (enter the loop), MARK (print ``LAST <t> <n>``), TRACE
    (print ``H <t>`` as each handler starts), STOP."""
    gate, stop = threading.Event(), threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "GO":
                gate.set()
            elif cmd == "MARK":
                with Trace.lock:
                    print(f"LAST {Trace.last:.6f} {Trace.first:.6f}", flush=True)
            elif cmd == "TRACE":
                Trace.tracing = True
            elif cmd == "STOP":
                break
        gate.set()
        stop.set()

    threading.Thread(target=commands, daemon=True).start()
    if system in QUARRY_VARIANTS:
        quarry_child(dsn, gate, stop, system)
    elif system == "pgqueuer":
        pgqueuer_child(dsn, gate, stop)
    else:
        procrastinate_child(dsn, gate, stop)
    print("STOPPED", flush=True)


# -- parent ------------------------------------------------------------------------------


@dataclass
class Measurement:
    system: str
    workers: int
    tasks: int
    bulk_s: float
    drain_s: float
    e2e_s: float
    latencies: list[float] = field(default_factory=list)

    @property
    def bulk_rate(self) -> float:
        return self.tasks / self.bulk_s

    @property
    def drain_rate(self) -> float:
        return self.tasks / self.drain_s

    @property
    def e2e_rate(self) -> float:
        return self.tasks / self.e2e_s


class Fleet:
    def __init__(self, system: str, dsn: str, workers: int) -> None:
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    system,
                    "--dsn",
                    dsn,
                    "--batch",
                    str(BATCH[0]),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        for p in self.procs:
            line = self._line(p)
            if line != "READY":
                raise RuntimeError(f"{system} worker did not start: {line!r}")

    @staticmethod
    def _line(p: subprocess.Popen[str]) -> str:
        assert p.stdout is not None
        return p.stdout.readline().strip()

    def send(self, cmd: str, procs: list[subprocess.Popen[str]] | None = None) -> None:
        for p in procs or self.procs:
            assert p.stdin is not None
            p.stdin.write(cmd + "\n")
            p.stdin.flush()

    def marks(self) -> tuple[float, float]:
        """The first handler start and the last task end over the fleet (wall clock)."""
        self.send("MARK")
        ends, starts = [], []
        for p in self.procs:
            line = self._line(p)
            while line.startswith("H "):
                line = self._line(p)
            ends.append(float(line.split()[1]))
            if float(line.split()[2]):
                starts.append(float(line.split()[2]))
        return min(starts), max(ends)

    def close(self) -> None:
        with suppress(BrokenPipeError, OSError):
            self.send("STOP")
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()


def wait_done(dsn: str, sql: str, target: int, timeout: float = 300.0) -> None:
    """Poll (every 20 ms, off the clock: the times come from the workers) until
    ``target`` tasks are recorded as done."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
            if row is not None and int(row[0]) >= target:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{row[0] if row else 0} of {target} done after {timeout}s")
            time.sleep(0.02)


def measure(system: str, workers: int, tasks: int, latency: bool) -> Measurement:
    with scratch_database() as dsn:
        setup(system, dsn)
        producer = producer_for(system, dsn)
        try:
            began = time.perf_counter()
            for start in range(0, tasks, BULK_CHUNK):
                producer.bulk(start, min(BULK_CHUNK, tasks - start))
            bulk_s = time.perf_counter() - began
            fleet = Fleet(system, dsn, workers)
            try:
                fleet.send("GO")
                wait_done(dsn, done_sql(system), tasks)
                first, last = fleet.marks()
                drain_s = last - first
                time.sleep(0.5)  # let every worker settle into its idle wait
                started = time.time()
                for start in range(tasks, 2 * tasks, E2E_CHUNK):
                    producer.bulk(start, min(E2E_CHUNK, 2 * tasks - start))
                wait_done(dsn, done_sql(system), 2 * tasks)
                e2e_s = fleet.marks()[1] - started
                latencies: list[float] = []
                if latency:
                    fleet.send("TRACE")
                    p = fleet.procs[0]
                    for i in range(LATENCY_SAMPLES):
                        t0 = time.time()
                        producer.single(2 * tasks + i, 1)
                        line = fleet._line(p)
                        latencies.append(float(line.split()[1]) - t0)
                        time.sleep(0.005)
            finally:
                fleet.close()
        finally:
            producer.close()
    return Measurement(system, workers, tasks, bulk_s, drain_s, e2e_s, latencies)


def single_enqueue(system: str, n: int) -> float:
    with scratch_database() as dsn:
        setup(system, dsn)
        producer = producer_for(system, dsn)
        try:
            began = time.perf_counter()
            producer.single(0, n)
            return n / (time.perf_counter() - began)
        finally:
            producer.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ratio_pairs(systems: list[str]) -> list[tuple[str, str]]:
    mine = [s for s in systems if s in QUARRY_VARIANTS]
    return [(m, o) for m in mine for o in systems if o in PEERS]


def report(
    runs: dict[tuple[str, int], list[Measurement]],
    singles: dict[str, list[float]],
    workers: list[int],
    systems: list[str],
) -> None:
    med = statistics.median
    head = "| system | enqueue/s single | enqueue/s bulk | " + " | ".join(
        f"drain/s W={w} | e2e/s W={w}" for w in workers
    )
    print(head + " | latency p50 / p99 ms (W=1) |")
    print("|" + "---|" * (4 + 2 * len(workers)))

    def bulk(s: str) -> float:
        return med(m.bulk_rate for w in workers for m in runs[(s, w)])

    def lat(s: str) -> list[float]:
        return [x for w in workers for m in runs[(s, w)] for x in m.latencies]

    for s in systems:
        cells = [s, f"{med(singles[s]):,.0f}", f"{bulk(s):,.0f}"]
        for w in workers:
            cells += [
                f"{med(m.drain_rate for m in runs[(s, w)]):,.0f}",
                f"{med(m.e2e_rate for m in runs[(s, w)]):,.0f}",
            ]
        ls = lat(s)
        cells.append(f"{pct(ls, 0.5) * 1000:.1f} / {pct(ls, 0.99) * 1000:.1f}" if ls else "-")
        print("| " + " | ".join(cells) + " |")
    for mine, other in ratio_pairs(systems):
        cells = [
            f"{mine} / {other}",
            f"{med(singles[mine]) / med(singles[other]):.2f}x",
            f"{bulk(mine) / bulk(other):.2f}x",
        ]
        for w in workers:
            q, o = runs[(mine, w)], runs[(other, w)]
            cells += [
                f"{med(m.drain_rate for m in q) / med(m.drain_rate for m in o):.2f}x",
                f"{med(m.e2e_rate for m in q) / med(m.e2e_rate for m in o):.2f}x",
            ]
        lq, lo = lat(mine), lat(other)
        cells.append(f"{pct(lo, 0.99) / pct(lq, 0.99):.2f}x (p99)" if lq and lo else "-")
        print("| " + " | ".join(cells) + " |")
    if len(next(iter(runs.values()))) < 2:
        return
    print()
    print(
        "| worst round | enqueue single | enqueue bulk | "
        + " | ".join(f"drain W={w} | e2e W={w}" for w in workers)
        + " |"
    )
    print("|" + "---|" * (3 + 2 * len(workers)))
    for mine, other in ratio_pairs(systems):
        pairs = {w: list(zip(runs[(mine, w)], runs[(other, w)], strict=True)) for w in workers}
        single = min(a / b for a, b in zip(singles[mine], singles[other], strict=True))
        blk = min(q.bulk_rate / o.bulk_rate for w in workers for q, o in pairs[w])
        cells = [f"{mine} / {other}", f"{single:.2f}x", f"{blk:.2f}x"]
        for w in workers:
            cells += [
                f"{min(q.drain_rate / o.drain_rate for q, o in pairs[w]):.2f}x",
                f"{min(q.e2e_rate / o.e2e_rate for q, o in pairs[w]):.2f}x",
            ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--single", type=int, default=1000, help="tasks per single-enqueue run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, choices=SYSTEMS)
    parser.add_argument(
        "--batch", type=int, default=10, help="quarry_batch's batch size (pgqueuer's is 10)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians and worst")
    parser.add_argument("--child", choices=SYSTEMS)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    BATCH[0] = args.batch
    if args.child:
        child(args.child, args.dsn)
        return
    print(f"pgqueuer: {PGQ_CONFIG}")
    print(f"procrastinate: {PRO_CONFIG}")
    print(f"quarry_batch: --batch {args.batch}", flush=True)
    runs: dict[tuple[str, int], list[Measurement]] = {}
    singles: dict[str, list[float]] = {}
    for r in range(args.repeat):
        order = args.systems[r % len(args.systems) :] + args.systems[: r % len(args.systems)]
        for s in order:
            rate = single_enqueue(s, args.single)
            singles.setdefault(s, []).append(rate)
            print(f"run {r + 1} {s:>13}: single enqueue {rate:7,.0f}/s", flush=True)
        for w in args.workers:
            for s in order:
                m = measure(s, w, args.tasks, latency=w == 1)
                runs.setdefault((s, w), []).append(m)
                lat = (
                    f"  latency p50 {pct(m.latencies, 0.5) * 1000:.1f} ms"
                    f" p99 {pct(m.latencies, 0.99) * 1000:.1f} ms"
                    if m.latencies
                    else ""
                )
                print(
                    f"run {r + 1} {s:>13} W={w}: bulk enqueue {m.bulk_rate:7,.0f}/s"
                    f"  drain {m.drain_rate:7,.0f}/s  end-to-end {m.e2e_rate:7,.0f}/s{lat}",
                    flush=True,
                )
    print()
    print(
        f"{args.tasks} no-op tasks per drain and per end-to-end, {args.single} per single "
        f"enqueue; medians of {args.repeat} rounds; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    report(runs, singles, args.workers, args.systems)


if __name__ == "__main__":
    main()
