"""Queue throughput: Quarry's task queue side by side with pgqueuer and procrastinate.

Same Postgres, same run, same work, each system in a fresh database per measurement:

1. **enqueue** -- one producer enqueues N no-op tasks, one call (one transaction)
   per task, with each system's ordinary single-task API;
2. **drain** -- W worker processes (1, 2, 4), started and connected beforehand, are
   released together and claim + complete (execute a no-op) until the queue is empty,
   timed from the start signal to the last handler run (each system's completion
   writes are checked afterwards; pgqueuer's are buffered, so its figure does not
   wait for them while Quarry's and procrastinate's completions are synchronous);
   each system's own worker in its "exit when empty" mode with default settings
   (pgqueuer: ``QueueManager.run(mode=drain)``, batch size 10; procrastinate:
   ``run_worker(wait=False)``, concurrency 1; Quarry: ``Worker.drain()``).
   Quarry's figure is timed to the moment ``drain()`` returned, after its last
   completion was written, which is stricter than the others' last handler run.

Quarry runs in up to three variants: ``quarry`` (the default worker: one statement per
task, completing one and claiming the next), ``quarry_batch`` (``--batch``, default 10
like pgqueuer's batch size: claims up to 10 per statement and records their
completions in the statement that claims the next batch, ``runtime/queue/batch.py``)
and ``quarry_sync`` (the default worker waiting for the WAL flush on every commit).

The end-to-end figure is ``N / (enqueue seconds + drain seconds)``.

    uv sync --group bench
    .venv/bin/python bench/queue_throughput.py [--tasks 3000] [--workers 1 2 4] [--repeat 3]

Needs a Postgres superuser DSN in ``QUARRY_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) to create scratch databases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

ADMIN_DSN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEMS = ("quarry", "quarry_batch", "pgqueuer", "procrastinate", "quarry_sync")
DEFAULT_SYSTEMS = ["quarry", "quarry_batch", "pgqueuer", "procrastinate"]
QUARRY_VARIANTS = ("quarry", "quarry_batch", "quarry_sync")
BATCH = [10]  # --batch, for quarry_batch


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


# -- per-system setup, enqueue and drain ----------------------------------------------


# When this worker process last finished running a handler: the drain ends at the
# latest of these across workers. (A worker's "queue is empty" exit can lag: pgqueuer's
# drain mode takes seconds to notice, which is not work.)
LAST_HANDLED = [0.0]


def handled() -> None:
    LAST_HANDLED[0] = time.time()


def quarry_setup(dsn: str) -> None:
    from quarry.store.db import create_state_engine
    from quarry.store.migrate import migrate

    engine = create_state_engine(sa_url(dsn))
    migrate(engine)
    engine.dispose()


def quarry_enqueue(dsn: str, n: int) -> float:
    from quarry.runtime.queue import open_queue
    from quarry.store.db import create_state_engine

    engine = create_state_engine(sa_url(dsn))
    queue = open_queue(engine)
    with queue.pinned():  # one connection for the producer, as the others hold
        started = time.perf_counter()
        for i in range(n):
            queue.enqueue("bench", "noop", {"i": i})
        elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def quarry_worker(
    dsn: str, ready: Callable[[], None], *, async_commit: bool = True, batch: int = 1
) -> int:
    from quarry.runtime.queue import open_queue
    from quarry.runtime.queue.batch import make_worker
    from quarry.store.db import create_state_engine

    engine = create_state_engine(sa_url(dsn), pool_size=2)
    worker = make_worker(
        open_queue(engine),
        lambda task: None,
        batch_size=batch,
        listen=False,
        reap_interval=None,
        async_commit=async_commit,
    )
    with engine.connect():
        pass  # connect before the start signal, like the others
    ready()
    succeeded = worker.drain().succeeded
    handled()  # after the last completion was written, not after the last handler
    return succeeded


def quarry_batch_worker(dsn: str, ready: Callable[[], None]) -> int:
    """Quarry's batched worker: up to BATCH tasks per claim, completions buffered."""
    return quarry_worker(dsn, ready, batch=BATCH[0])


def pgqueuer_setup(dsn: str) -> None:
    from pgqueuer import Queries

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await Queries.from_psycopg_connection(conn).install()
        await conn.close()

    asyncio.run(main())


def pgqueuer_enqueue(dsn: str, n: int) -> float:
    from pgqueuer import Queries

    async def main() -> float:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        queries = Queries.from_psycopg_connection(conn)
        started = time.perf_counter()
        for i in range(n):
            await queries.enqueue("noop", str(i).encode())
        elapsed = time.perf_counter() - started
        await conn.close()
        return elapsed

    return asyncio.run(main())


def pgqueuer_worker(dsn: str, ready: Callable[[], None]) -> int:
    from pgqueuer import Queries, QueueManager
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    count = 0

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        qm = QueueManager(Queries.from_psycopg_connection(conn))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            nonlocal count
            count += 1
            handled()

        await asyncio.get_running_loop().run_in_executor(None, ready)
        await qm.run(mode=QueueExecutionMode.drain)
        await conn.close()

    asyncio.run(main())
    return count


def _procrastinate_app(dsn: str) -> object:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    def noop(i: int) -> None:
        handled()

    return app


def procrastinate_setup(dsn: str) -> None:
    async def main() -> None:
        app = _procrastinate_app(dsn)
        async with app.open_async():  # type: ignore[attr-defined]
            await app.schema_manager.apply_schema_async()  # type: ignore[attr-defined]

    asyncio.run(main())


def procrastinate_enqueue(dsn: str, n: int) -> float:
    async def main() -> float:
        app = _procrastinate_app(dsn)
        async with app.open_async():  # type: ignore[attr-defined]
            task = app.tasks["noop"]  # type: ignore[attr-defined]
            started = time.perf_counter()
            for i in range(n):
                await task.defer_async(i=i)
            return time.perf_counter() - started

    return asyncio.run(main())


def procrastinate_worker(dsn: str, ready: Callable[[], None]) -> int:
    async def main() -> None:
        app = _procrastinate_app(dsn)
        async with app.open_async():  # type: ignore[attr-defined]
            await asyncio.get_running_loop().run_in_executor(None, ready)
            await app.run_worker_async(wait=False, install_signal_handlers=False)  # type: ignore[attr-defined]

    asyncio.run(main())
    return -1  # procrastinate does not report a count; checked in the database


def quarry_sync_worker(dsn: str, ready: Callable[[], None]) -> int:
    """Quarry with every claim and completion waiting for its WAL flush."""
    return quarry_worker(dsn, ready, async_commit=False)


SETUP = {
    "quarry": quarry_setup,
    "quarry_batch": quarry_setup,
    "quarry_sync": quarry_setup,
    "pgqueuer": pgqueuer_setup,
    "procrastinate": procrastinate_setup,
}
ENQUEUE = {
    "quarry": quarry_enqueue,
    "quarry_batch": quarry_enqueue,
    "quarry_sync": quarry_enqueue,
    "pgqueuer": pgqueuer_enqueue,
    "procrastinate": procrastinate_enqueue,
}
WORKER: dict[str, Callable[[str, Callable[[], None]], int]] = {
    "quarry": quarry_worker,
    "quarry_batch": quarry_batch_worker,
    "quarry_sync": quarry_sync_worker,
    "pgqueuer": pgqueuer_worker,
    "procrastinate": procrastinate_worker,
}
REMAINING = {
    "quarry": "SELECT count(*) FROM tasks WHERE state <> 'succeeded'",
    "quarry_batch": "SELECT count(*) FROM tasks WHERE state <> 'succeeded'",
    "quarry_sync": "SELECT count(*) FROM tasks WHERE state <> 'succeeded'",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
}
DONE = {
    "quarry": "SELECT count(*) FROM tasks WHERE state = 'succeeded'",
    "quarry_batch": "SELECT count(*) FROM tasks WHERE state = 'succeeded'",
    "quarry_sync": "SELECT count(*) FROM tasks WHERE state = 'succeeded'",
    "pgqueuer": "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
}


def scalar(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


# -- child process: one worker ---------------------------------------------------------


def child(system: str, dsn: str) -> None:
    def ready() -> None:
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            raise SystemExit("no start signal")

    WORKER[system](dsn, ready)
    print(f"DONE {LAST_HANDLED[0]:.6f}", flush=True)


# -- parent ------------------------------------------------------------------------------


@dataclass
class Measurement:
    system: str
    workers: int
    tasks: int
    enqueue_s: float
    drain_s: float

    @property
    def enqueue_rate(self) -> float:
        return self.tasks / self.enqueue_s

    @property
    def drain_rate(self) -> float:
        return self.tasks / self.drain_s

    @property
    def e2e_rate(self) -> float:
        return self.tasks / (self.enqueue_s + self.drain_s)


def drain(system: str, dsn: str, workers: int) -> float:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", system, "--dsn", dsn, "--batch", str(BATCH[0])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"{system} worker did not start: {line!r}")
        started = time.time()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        ends = []
        for p in procs:
            assert p.stdout is not None
            out = p.stdout.read().strip().splitlines()
            done = [line for line in out if line.startswith("DONE ")]
            if p.wait(120) != 0 or not done:
                raise RuntimeError(f"{system} worker failed: {out[-5:]}")
            ends.append(float(done[-1].split()[1]))
        return max(ends) - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()


def measure(system: str, workers: int, tasks: int) -> Measurement:
    with scratch_database() as dsn:
        SETUP[system](dsn)
        enqueue_s = ENQUEUE[system](dsn, tasks)
        drain_s = drain(system, dsn, workers)
        remaining = scalar(dsn, REMAINING[system])
        done = scalar(dsn, DONE[system])
        if remaining or done != tasks:
            raise RuntimeError(f"{system}: {done} done, {remaining} left of {tasks}")
    return Measurement(system, workers, tasks, enqueue_s, drain_s)


def median_of(results: list[Measurement]) -> Measurement:
    """The run with the median drain time (its own enqueue time kept alongside)."""
    ordered = sorted(results, key=lambda m: m.drain_s)
    mid = ordered[len(ordered) // 2]
    enqueue_s = statistics.median(m.enqueue_s for m in results)
    return Measurement(mid.system, mid.workers, mid.tasks, enqueue_s, mid.drain_s)


def table(results: list[Measurement], workers: list[int], systems: list[str]) -> str:
    by = {(m.system, m.workers): m for m in results}
    lines = []
    header = "| system | enqueue/s | " + " | ".join(f"drain/s W={w} | e2e/s W={w}" for w in workers)
    lines.append(header + " |")
    lines.append("|" + "---|" * (2 + 2 * len(workers)))
    for s in systems:
        enq = statistics.median(by[(s, w)].enqueue_rate for w in workers)
        cells = [s, f"{enq:,.0f}"]
        for w in workers:
            m = by[(s, w)]
            cells += [f"{m.drain_rate:,.0f}", f"{m.e2e_rate:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for mine, other in ratio_pairs(systems):
        q_enq = statistics.median(by[(mine, w)].enqueue_rate for w in workers)
        o_enq = statistics.median(by[(other, w)].enqueue_rate for w in workers)
        cells = [f"{mine} / {other}", f"{q_enq / o_enq:.2f}x"]
        for w in workers:
            q, o = by[(mine, w)], by[(other, w)]
            cells += [f"{q.drain_rate / o.drain_rate:.2f}x", f"{q.e2e_rate / o.e2e_rate:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_pairs(systems: list[str]) -> list[tuple[str, str]]:
    mine = [s for s in systems if s in ("quarry", "quarry_batch")]
    return [(m, o) for m in mine for o in systems if o not in QUARRY_VARIANTS]


def worst_table(
    runs: dict[tuple[str, int], list[Measurement]], workers: list[int], systems: list[str]
) -> str:
    """The lowest ratio over the rounds, each round's figures paired with the same
    round's (the systems of one round and one W run back to back)."""
    lines = [
        "| worst round | enqueue | "
        + " | ".join(f"drain W={w} | e2e W={w}" for w in workers)
        + " |",
        "|" + "---|" * (2 + 2 * len(workers)),
    ]
    for mine, other in ratio_pairs(systems):
        pairs = {w: list(zip(runs[(mine, w)], runs[(other, w)], strict=True)) for w in workers}
        enq = min(q.enqueue_rate / o.enqueue_rate for w in workers for q, o in pairs[w])
        cells = [f"{mine} / {other}", f"{enq:.2f}x"]
        for w in workers:
            cells += [
                f"{min(q.drain_rate / o.drain_rate for q, o in pairs[w]):.2f}x",
                f"{min(q.e2e_rate / o.e2e_rate for q, o in pairs[w]):.2f}x",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- enqueue, interleaved --------------------------------------------------------------


def interleaved_enqueue(tasks: int, chunk: int, systems: list[str]) -> None:
    """Enqueue into every system's own database in alternating chunks of ``chunk``
    tasks, timing each system's chunks only: under a load that changes from second to
    second every system sees the same moments, so the ratio is stable where separate
    runs are not. Same calls as the enqueue phase above (one transaction per task)."""
    import pgqueuer

    from quarry.runtime.queue import open_queue
    from quarry.store.db import create_state_engine

    loop = asyncio.new_event_loop()
    elapsed = dict.fromkeys(systems, 0.0)
    with contextlib.ExitStack() as stack:
        steps: dict[str, Callable[[int], None]] = {}
        for s in systems:
            dsn = stack.enter_context(scratch_database())
            SETUP[s](dsn)
            if s.startswith("quarry"):
                engine = create_state_engine(sa_url(dsn), pool_size=2)
                stack.callback(engine.dispose)
                queue = open_queue(engine)
                stack.enter_context(queue.pinned())

                def quarry_step(start: int, queue: Any = queue) -> None:
                    for i in range(start, start + chunk):
                        queue.enqueue("bench", "noop", {"i": i})

                steps[s] = quarry_step
            elif s == "pgqueuer":
                conn = loop.run_until_complete(
                    psycopg.AsyncConnection.connect(dsn, autocommit=True)
                )
                stack.callback(lambda c=conn: loop.run_until_complete(c.close()))
                queries = pgqueuer.Queries.from_psycopg_connection(conn)

                async def pgq(start: int, queries: Any = queries) -> None:
                    for i in range(start, start + chunk):
                        await queries.enqueue("noop", str(i).encode())

                steps[s] = lambda start, f=pgq: loop.run_until_complete(f(start))
            else:
                app: Any = _procrastinate_app(dsn)
                loop.run_until_complete(app.open_async())
                stack.callback(lambda a=app: loop.run_until_complete(a.close_async()))

                async def pro(start: int, app: Any = app) -> None:
                    task = app.tasks["noop"]
                    for i in range(start, start + chunk):
                        await task.defer_async(i=i)

                steps[s] = lambda start, f=pro: loop.run_until_complete(f(start))
        for n, start in enumerate(range(0, tasks - chunk + 1, chunk)):
            order = systems[n % len(systems) :] + systems[: n % len(systems)]
            for s in order:
                began = time.perf_counter()
                steps[s](start)
                elapsed[s] += time.perf_counter() - began
    loop.close()
    done = (tasks // chunk) * chunk
    print(
        f"{done} enqueues per system, interleaved in chunks of {chunk}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print("| system | enqueue/s |\n|---|---|")
    for s in systems:
        print(f"| {s} | {done / elapsed[s]:,.0f} |")
    for s in systems:
        for o in systems:
            if s.startswith("quarry") and not o.startswith("quarry"):
                print(f"| {s} / {o} | {elapsed[o] / elapsed[s]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, choices=SYSTEMS)
    parser.add_argument(
        "--batch", type=int, default=10, help="quarry_batch's batch size (pgqueuer's is 10)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median")
    parser.add_argument(
        "--interleaved-enqueue",
        type=int,
        metavar="CHUNK",
        help="only measure enqueueing, the systems taking turns in chunks of CHUNK tasks",
    )
    parser.add_argument("--child", choices=SYSTEMS)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    BATCH[0] = args.batch
    if args.child:
        child(args.child, args.dsn)
        return
    if args.interleaved_enqueue:
        # One Quarry variant is enough: they share the enqueue path.
        others = [s for s in args.systems if s not in QUARRY_VARIANTS]
        interleaved_enqueue(args.tasks, args.interleaved_enqueue, ["quarry", *others])
        return
    runs: dict[tuple[str, int], list[Measurement]] = {}
    for r in range(args.repeat):
        for w in args.workers:
            # Rotate the order so no system always runs first (or last) in a round.
            order = args.systems[r % len(args.systems) :] + args.systems[: r % len(args.systems)]
            for s in order:
                m = measure(s, w, args.tasks)
                runs.setdefault((s, w), []).append(m)
                print(
                    f"run {r + 1} {s:>13} W={w}: enqueue {m.enqueue_rate:7,.0f}/s"
                    f"  drain {m.drain_rate:7,.0f}/s  end-to-end {m.e2e_rate:7,.0f}/s",
                    flush=True,
                )
    results = [median_of(v) for v in runs.values()]
    print()
    print(
        f"{args.tasks} no-op tasks per measurement, median of {args.repeat} runs; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(table(results, args.workers, args.systems))
    if args.repeat > 1:
        print()
        print(worst_table(runs, args.workers, args.systems))


if __name__ == "__main__":
    main()
