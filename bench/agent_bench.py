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

Note: this measures the agent loop inside one process (what ``quarry ask`` and an
``agent`` run execute). A queue worker runs one task per worker thread, so a worker
process's concurrent turns are its thread count today, not the loop's capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.model_server import Call, ModelServer, Reply

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
    shop = create_demo_workspace(root / "shop")
    config = yaml.safe_load((shop / "config.yml").read_text())
    config["models"] = [
        {
            "name": m,
            "vendor": "openai",
            "model_ref": "gpt-bench",
            "key_var": KEY,
            "api_url": server.openai_url,
        }
        for m in ("openai-4o-mini", "gpt")
    ]
    (shop / "config.yml").write_text(yaml.safe_dump(config))
    agent = {
        "model": "gpt",
        "system_instructions": "Answer with SQL on {{ databases.local.name }}.",
        "tools": [{"type": "execute_sql", "database": "local"}],
    }
    (shop / "agents" / "bench.agent.yml").write_text(yaml.safe_dump(agent))
    result = compile_local(svc.engine, svc.store, "local", shop, "shop")
    row = svc.catalog.workspace("local", "shop", fresh=True)
    source = RevisionSource(svc.catalog, row, result.revision_id)
    return svc, source, BlobCache(root / "data" / "cache")


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


async def concurrency(
    args: argparse.Namespace, source: Any, cache: Any, server: ModelServer
) -> None:
    n = args.concurrent
    delay = args.slow_ms / 1000
    script_one_tool_turns(server, n, delay, "q")
    started = time.perf_counter()
    await asyncio.gather(*(quarry_turn(source, cache, f"q {k}?") for k in range(n)))
    quarry_wall = time.perf_counter() - started
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
    print(f"{'':<10}{'wall s':>10}{'turns/s':>10}")
    for name, wall in (("quarry", quarry_wall), ("plain SDK", plain_wall)):
        print(f"{name:<10}{wall:>10.2f}{n / wall:>10.1f}")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, ModelServer() as server:
        import os

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
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
