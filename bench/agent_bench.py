"""Agent turns: Quarry's own overhead per turn, and how many turns one event loop
carries at once, each beside a plain loop over the OpenAI SDK (the ceiling).

Both talk to the scripted model server (tests/support/model_server.py) through the
real ``openai`` SDK over a loopback socket; the server answers after a fixed delay.

* overhead: a 3-tool turn (one model response calling ``execute_sql`` three times on
  DuckDB, then the answer), ``--turns`` times one after another. Overhead = the
  turn's wall time minus the time spent inside model calls (each ``model_response``
  event's ``seconds``; for the plain loop, measured around the SDK call). What is
  left is Quarry: instructions rendered, tools built, SQL checked read-only and run
  on the run's sandboxed DuckDB, results rendered, events. Goal: < 15 ms p50.
* concurrency: ``--concurrent`` one-tool turns started at once on one event loop with
  a ``--slow-ms`` model (default 500 ms): every turn makes two model calls, so a loop
  that overlaps them all finishes in about 2 x 500 ms. Goal: >= 200 turns at once.

    .venv/bin/python bench/agent_bench.py                      # defaults
    .venv/bin/python bench/agent_bench.py --turns 200 --concurrent 400

  The turns take warm connections from the pool (quarry.agents.pool), as thread
  turns on a worker do: the first round opens them, the second reuses them.
* worker (``--worker``, needs Postgres at ``--pg``): ``--concurrent`` thread turns
  posted, then one queue worker (``build_run_worker``: up to QUARRY_AGENT_TURN_SLOTS
  turns at once) started; wall time until every reply is answered, two rounds (the
  second on warm connections). Every model response and tool result is journaled
  in Postgres before it is used, as in production. Goal: >= 200 turns at once, close
  to the plain loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.model_server import Call, ModelServer, Reply

from quarry.agents.pool import turn_connections
from quarry.agents.service import ask_agent
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.source import RevisionSource

KEY = "BENCH_OPENAI_KEY"
TOOL = {
    "type": "function",
    "function": {
        "name": "execute_sql",
        "description": "Execute the SQL query.",
        "parameters": {
            "type": "object",
            "properties": {"sql": {"type": "string"}},
            "required": ["sql"],
        },
    },
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def workspace(root: Path, server: ModelServer) -> tuple[Any, RevisionSource, BlobCache]:
    state = root / "state"
    svc = build_services(
        Settings(
            database_url=f"sqlite:///{state / 'state.db'}",
            blob_url=(state / "blobs").as_uri(),
            data_dir=root / "data",
        )
    )
    shop = bench_workspace(root, server)
    result = compile_local(svc.engine, svc.store, "local", shop, "shop")
    row = svc.catalog.workspace("local", "shop", fresh=True)
    source = RevisionSource(svc.catalog, row, result.revision_id)
    return svc, source, BlobCache(root / "data" / "cache")


def bench_workspace(root: Path, server: ModelServer) -> Path:
    """The demo workspace with the scripted models and a one-tool agent."""
    shop = create_demo_workspace(root / "shop")
    server.serve_models(shop, KEY)
    agent = {
        "model": "gpt",
        "system_instructions": "Answer with SQL on {{ databases.local.name }}.",
        "tools": [{"type": "execute_sql", "database": "local"}],
    }
    (shop / "agents" / "bench.agent.yml").write_text(yaml.safe_dump(agent))
    return shop


def script_three_tool_turns(server: ModelServer, turns: int, delay: float) -> None:
    for k in range(turns):
        calls = [Call("execute_sql", {"sql": f"SELECT {i} AS o{k}c{i}"}) for i in range(3)]
        server.add(
            Reply(calls=calls, match=f"overhead {k}?", delay=delay),
            Reply(text=f"done {k}", match=f"o{k}c2\n", delay=delay),
        )


def script_one_tool_turns(server: ModelServer, turns: int, delay: float, tag: str) -> None:
    for k in range(turns):
        server.add(
            Reply(
                calls=[Call("execute_sql", {"sql": f"SELECT 1 AS {tag}{k}x"})],
                match=f"{tag} {k}?",
                delay=delay,
            ),
            Reply(text=f"done {k}", match=f"{tag}{k}x\n", delay=delay),
        )


async def quarry_turn(
    source: RevisionSource, cache: BlobCache, prompt: str, shared: Connections | None = None
) -> tuple[float, float]:
    """(wall seconds, seconds inside model calls) of one Quarry turn: on ``shared``
    connections already open, or on connections of its own as a run has (opening the
    sandboxed DuckDB is then part of the turn, closing it is not)."""
    connections = shared or Connections(source, cache, secrets=lambda name: "sk-bench")
    events: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        result = await ask_agent(
            source, connections, "agents/bench", prompt, on_event=events.append, stream=False
        )
    finally:
        wall = time.perf_counter() - started
        if shared is None:
            connections.close()
    assert result.status == "answered", result.answer
    model = sum(e["seconds"] for e in events if e["type"] == "model_response")
    return wall, model


async def plain_turn(
    client: openai.AsyncOpenAI, db: duckdb.DuckDBPyConnection, prompt: str
) -> tuple[float, float]:
    """The same turn with the SDK and DuckDB and nothing else (the ceiling)."""
    messages: list[Any] = [
        {"role": "system", "content": "Answer with SQL on local."},
        {"role": "user", "content": prompt},
    ]
    model = 0.0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        reply = await client.chat.completions.create(
            model="gpt-bench", messages=messages, tools=[TOOL]
        )
        model += time.perf_counter() - t0
        message = reply.choices[0].message
        if not message.tool_calls:
            return time.perf_counter() - started, model
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            sql = json.loads(call.function.arguments)["sql"]
            rows = await asyncio.to_thread(lambda q=sql: db.cursor().execute(q).fetchall())
            content = "\n".join([sql.rsplit(" AS ", 1)[1], *(str(r[0]) for r in rows)])
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content + "\n"})


def report(title: str, rows: dict[str, list[float]]) -> None:
    print(title)
    print(f"{'':<10}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}")
    for name, values in rows.items():
        ms = [v * 1000 for v in values]
        print(
            f"{name:<10}{statistics.median(ms):>10.2f}{percentile(ms, 0.9):>10.2f}{max(ms):>10.2f}"
        )


async def overhead(args: argparse.Namespace, source: Any, cache: Any, server: ModelServer) -> None:
    delay = args.model_ms / 1000
    script_three_tool_turns(server, 3 * args.turns, delay)
    shared = Connections(source, cache, secrets=lambda name: "sk-bench")
    quarry: list[float] = []
    for k in range(args.turns):
        wall, model = await quarry_turn(source, cache, f"overhead {k}?", shared)
        quarry.append(wall - model)
    shared.close()
    as_run: list[float] = []
    for k in range(2 * args.turns, 3 * args.turns):
        wall, model = await quarry_turn(source, cache, f"overhead {k}?")
        as_run.append(wall - model)
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=server.openai_url)
    db = duckdb.connect()
    plain: list[float] = []
    for k in range(args.turns, 2 * args.turns):
        wall, model = await plain_turn(client, db, f"overhead {k}?")
        plain.append(wall - model)
    await client.close()
    report(
        f"overhead of a 3-tool turn (wall - model time), {args.turns} turns, "
        f"model {args.model_ms:g} ms",
        # the first of each pays imports and first-use caches
        {"quarry": quarry[1:], "+ open db": as_run[1:], "plain SDK": plain[1:]},
    )


async def pooled_turn(source: RevisionSource, cache: BlobCache, prompt: str) -> None:
    def checkout() -> Any:
        manager = turn_connections().checkout(source, cache, secrets=lambda name: "sk-bench")
        return manager, manager.__enter__()

    manager, connections = await asyncio.to_thread(checkout)
    try:
        result = await ask_agent(source, connections, "agents/bench", prompt, stream=False)
    except BaseException as exc:
        await asyncio.to_thread(manager.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await asyncio.to_thread(manager.__exit__, None, None, None)
    assert result.status == "answered", result.answer


async def concurrency(
    args: argparse.Namespace, source: Any, cache: Any, server: ModelServer
) -> None:
    n = args.concurrent
    delay = args.slow_ms / 1000
    walls: list[float] = []
    for round_ in range(2):
        tag = f"q{round_}r"
        script_one_tool_turns(server, n, delay, tag)
        started = time.perf_counter()
        await asyncio.gather(*(pooled_turn(source, cache, f"{tag} {k}?") for k in range(n)))
        walls.append(time.perf_counter() - started)
    script_one_tool_turns(server, n, delay, "p")
    client = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url=server.openai_url,
        http_client=openai.DefaultAsyncHttpxClient(
            limits=__import__("httpx").Limits(max_connections=n + 10)
        ),
    )
    db = duckdb.connect()
    started = time.perf_counter()
    await asyncio.gather(*(plain_turn(client, db, f"p {k}?") for k in range(n)))
    plain_wall = time.perf_counter() - started
    await client.close()
    floor = 2 * delay
    print(f"\n{n} one-tool turns at once, model {args.slow_ms:g} ms (2 calls: floor {floor:.2f} s)")
    print(f"{'':<16}{'wall s':>10}{'turns/s':>10}{'x plain':>10}")
    rows = (("quarry cold", walls[0]), ("quarry warm", walls[1]), ("plain SDK", plain_wall))
    for name, wall in rows:
        print(f"{name:<16}{wall:>10.2f}{n / wall:>10.1f}{wall / plain_wall:>10.2f}")
    if args.worker:
        await asyncio.to_thread(worker_rounds, args, server, plain_wall)


def worker_rounds(args: argparse.Namespace, server: ModelServer, plain_wall: float) -> None:
    """Thread turns through the queue and one real worker, state in Postgres."""
    import psycopg
    from sqlalchemy import func, select

    from quarry.agents.threads import create_thread, post_message
    from quarry.core.settings import Role
    from quarry.node.services import build_run_worker
    from quarry.store import runs as rq
    from quarry.store import threads as tq
    from quarry.store.run_tables import runs as run_rows

    n = args.concurrent
    name = f"quarry_agent_bench_{os.getpid()}"
    admin = args.pg
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    walls: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            settings = Settings(
                database_url=url.replace("postgresql://", "postgresql+psycopg://", 1),
                blob_url=(root / "blobs").as_uri(),
                data_dir=root / "data",
                role=Role.WORKER,
                secret_env_allow={"*": [KEY]},
            )
            svc = build_services(settings)
            shop = bench_workspace(root, server)
            compile_local(svc.engine, svc.store, "local", shop, "shop")
            ws = svc.catalog.workspace("local", "shop", fresh=True)
            worker: Any = None
            runner = threading.Thread()
            try:
                for round_ in range(2):
                    tag = f"w{round_}r"
                    script_one_tool_turns(server, n, args.slow_ms / 1000, tag)
                    runs = []
                    # Every turn is posted before a worker runs: with a worker already
                    # running (the second round used to), turns ran while the others
                    # were posted and the wall missed most of them (2.6 s "warm").
                    for k in range(n):
                        thread = create_thread(svc.engine, svc.catalog, ws, "agents/bench", "u")
                        turn = post_message(svc.engine, svc.queue, svc.catalog, ws, thread,
                                            f"{tag} {k}?")  # fmt: skip
                        runs.append(turn.run.id)
                    worker = build_run_worker(svc)  # a new worker; the process stays warm
                    runner = threading.Thread(target=worker.run, daemon=True)
                    started = time.perf_counter()
                    runner.start()
                    while True:  # one query a look: not 200 competing with the worker
                        with svc.engine.connect() as conn:
                            left = conn.execute(
                                select(func.count())
                                .select_from(run_rows)
                                .where(run_rows.c.id.in_(runs))
                                .where(run_rows.c.state.in_(("queued", "running")))
                            ).scalar_one()
                        if not left:
                            break
                        time.sleep(0.05)
                    walls.append(time.perf_counter() - started)
                    with svc.engine.connect() as conn:
                        replies = [tq.get_reply_of_run(conn, r) for r in runs]
                        failed = [
                            rq.get_run_by_id(conn, m.run_id).error
                            for m in replies
                            if m.status != "answered" and m.run_id
                        ]
                    assert not failed, failed[:3]
                    worker.request_stop()
                    runner.join(30)
            finally:
                if worker is not None:
                    worker.request_stop()
                    runner.join(30)
                svc.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    peak = getattr(worker, "peak", 1)
    print(
        f"\n{n} thread turns through the queue, one worker ({type(worker).__name__}, "
        f"peak {peak} at once), model {args.slow_ms:g} ms"
    )
    print(f"{'':<16}{'wall s':>10}{'turns/s':>10}{'x plain':>10}")
    for label, wall in (("worker cold", walls[0]), ("worker warm", walls[1])):
        print(f"{label:<16}{wall:>10.2f}{n / wall:>10.1f}{wall / plain_wall:>10.2f}")
    print(f"{'plain SDK':<16}{plain_wall:>10.2f}{n / plain_wall:>10.1f}{1:>10.2f}")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, ModelServer() as server:
        os.environ[KEY] = "sk-bench"
        svc, source, cache = workspace(Path(tmp), server)
        try:
            await overhead(args, source, cache, server)
            await concurrency(args, source, cache, server)
        finally:
            svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50, help="3-tool turns for the overhead")
    parser.add_argument("--model-ms", type=float, default=20, help="model delay, overhead run")
    parser.add_argument("--concurrent", type=int, default=200, help="turns started at once")
    parser.add_argument("--slow-ms", type=float, default=500, help="model delay, concurrency")
    parser.add_argument("--worker", action="store_true", help="also through a queue worker")
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Postgres admin URL for --worker (a database is created and dropped)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
