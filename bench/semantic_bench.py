"""Semantic layer benchmark (issue 16): compile latency, query API latency against the
same SQL on DuckDB directly, and cached-hit throughput across two serve replicas.

* **compile**: a generated model of ``--views`` views (default 100; a chain of
  entities, each view joined to its neighbour, topics of five neighbouring views) and
  40 queries over it (single view, two- and four-view joins, measures of two views
  that fan out, with filters, time dimensions, orders). ``cold`` compiles each query
  on a freshly built model (no cached plan), ``cached`` compiles it again on the same
  model (the plan cached per revision); ``new values`` compiles the 20 queries that
  have filters again with filter values never asked before (the same shape: the plan
  is reused and only the parameters are bound). p50/p99 over ``--compile-rounds``
  rounds.
* **API vs direct**: a shop (customers, orders, line items: ``--orders`` orders) in a
  DuckDB file shipped with the workspace, compiled into a PostgreSQL state database +
  local-folder object store; two ``quarry serve --role serve`` processes on it
  (tokens required, as in a fleet). ``direct`` runs the SQL the API runs (from
  ``?sql_only=1``, asked with the row cap the API adds, ``LIMIT max_rows + 1``) with
  its parameters on one reused DuckDB cursor of a connection to the same file and
  Arrow out, as the connector does (it reuses the cursor of a read-only
  statement); it has no HTTP and no conversion
  to Python values (``direct+rows`` adds ``to_pylist()``, what a Python caller
  needing rows pays; shown for reference, the goal is against ``direct``).
  ``api cold`` posts the query with a filter value never asked before (a cache miss:
  compile, run, encode JSON; the answer is written to the shared store after the
  response); ``api hit`` posts one query again and again (answered from the
  replica's cache). Requests alternate with the direct runs, one connection each,
  in ``--rounds`` rounds: the ratio of the p50s per round, its median and the
  worst round; and the API's cost over the direct run of the same request (each
  pair run back to back), p50 in ms, which moves less than a ratio when other
  work shares the machine. The load average before and after is printed: on a
  shared machine every figure is inflated, the ratio most for small queries. The
  replicas run uvicorn as ``quarry serve`` does (``loop``/``http`` auto: uvloop
  and httptools, both installed).
* **throughput**: ``--clients`` client processes post the cached query for
  ``--duration`` seconds, spread over both replicas; requests per second in total.

    .venv/bin/python bench/semantic_bench.py [--orders 1000000] [--samples 40] [--rounds 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

PG_ADMIN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
QUERY_PATH = "/api/v1/workspaces/shop/semantic/query"
MAX_ROWS = 100_000  # QUARRY_SEMANTIC_MAX_ROWS of the replicas: they ask for one row more


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- compile latency -----------------------------------------------------------------


def generated_model(views: int) -> Any:
    from quarry.definitions.models.semantic import TopicConfig, ViewConfig
    from quarry.semantic import SemanticModel

    made = []
    for i in range(views):
        entities: list[dict[str, Any]] = [
            {"name": f"e{i}", "type": "primary", "description": "row", "key": "id"}
        ]
        if i > 0:
            entities.append(
                {"name": f"e{i - 1}", "type": "foreign", "description": "up", "key": "parent_id"}
            )
        made.append(
            ViewConfig.model_validate(
                {
                    "name": f"v{i}",
                    "description": f"view {i}",
                    "datasource": "warehouse",
                    "table": f"t{i}",
                    "entities": entities,
                    "dimensions": [
                        {"name": "id", "type": "number", "expr": "id"},
                        {"name": "parent_id", "type": "number", "expr": "parent_id"},
                        {"name": "kind", "type": "string", "expr": "kind"},
                        {"name": "created", "type": "date", "expr": "created_at"},
                        {"name": "label", "type": "string", "expr": "upper(label)"},
                    ],
                    "measures": [
                        {"name": "total", "type": "sum", "expr": "amount"},
                        {"name": "rows", "type": "count"},
                        {"name": "people", "type": "count_distinct", "expr": "person"},
                        {
                            "name": "big",
                            "type": "sum",
                            "expr": "amount",
                            "filters": [{"expr": "amount > 100"}],
                        },
                    ],
                }
            )
        )
    topics = [
        TopicConfig.model_validate(
            {
                "name": f"topic{k}",
                "description": "five neighbours",
                "views": [f"v{j}" for j in range(k, k + 5)],
                "base_view": f"v{k + 4}",
            }
        )
        for k in range(0, views - 4)
    ]
    return SemanticModel.from_definitions(made, topics)


def forty_queries(views: int) -> list[Any]:
    from quarry.semantic import SemanticQuery

    queries = []
    for n in range(40):
        k = (n * 7) % (views - 5)
        shape = n % 4
        topic = f"topic{k}"
        if shape == 0:  # one view
            body: dict[str, Any] = {
                "topic": topic,
                "measures": [f"v{k + 4}.total", f"v{k + 4}.rows"],
                "dimensions": [f"v{k + 4}.kind"],
                "filters": [{"field": f"v{k + 4}.kind", "op": "in", "values": ["a", "b"]}],
            }
        elif shape == 1:  # two views, many-to-one
            body = {
                "topic": topic,
                "measures": [f"v{k + 4}.total"],
                "dimensions": [f"v{k + 3}.label"],
                "time_dimensions": [{"dimension": f"v{k + 4}.created", "granularity": "month"}],
            }
        elif shape == 2:  # four hops
            body = {
                "topic": topic,
                "measures": [f"v{k + 4}.people", f"v{k + 4}.big"],
                "dimensions": [f"v{k}.kind"],
                "filters": [{"field": f"v{k}.created", "op": "gte", "value": "2024-01-01"}],
                "orders": [{"field": f"v{k + 4}.people", "direction": "desc"}],
                "limit": 10,
            }
        else:  # measures of two views that fan out
            body = {
                "topic": topic,
                "measures": [f"v{k + 2}.total", f"v{k + 4}.total"],
                "dimensions": [f"v{k + 1}.kind"],
            }
        queries.append(SemanticQuery.from_request(body))
    return queries


def with_new_values(query: Any, n: int) -> Any:
    """``query`` with filter values never asked before (the same shape), or None if
    it has no filter."""
    from quarry.semantic import SemanticQuery

    if not query.filters:
        return None
    body = query.model_dump(by_alias=True, exclude_defaults=True)
    for item in body["filters"]:
        if item["op"] == "in":
            item["values"] = [f"k{n}", f"j{n}"]
        else:
            item["value"] = f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}"
    return SemanticQuery.from_request(body)


def compile_latency(views: int, rounds: int) -> dict[str, list[float]]:
    from quarry.semantic import compile_query

    queries = forty_queries(views)
    cold: list[float] = []
    cached: list[float] = []
    new_values: list[float] = []
    build: list[float] = []
    asked = 0
    for _ in range(rounds):
        started = time.perf_counter()
        model = generated_model(views)
        build.append(time.perf_counter() - started)
        for query in queries:
            started = time.perf_counter()
            compile_query(model, query, dialect="duckdb")
            cold.append(time.perf_counter() - started)
        for query in queries:
            started = time.perf_counter()
            compile_query(model, query, dialect="duckdb")
            cached.append(time.perf_counter() - started)
        for query in queries:
            asked += 1
            fresh = with_new_values(query, asked)
            if fresh is None:
                continue
            started = time.perf_counter()
            compile_query(model, fresh, dialect="duckdb")
            new_values.append(time.perf_counter() - started)
    return {"cold": cold, "cached": cached, "new values": new_values, "model build": build}


# -- the shop and the serve processes -------------------------------------------------


def make_shop(root: Path, orders: int) -> None:
    """The test suite's shop workspace, with ``orders`` orders (and 3x line items)."""
    import duckdb
    from tests.integration.api.semantic.shop import make_shop as small_shop

    small_shop(root)
    database = root / "data" / "shop.duckdb"
    database.unlink()
    with duckdb.connect(str(database)) as con:
        customers = max(1000, orders // 20)
        con.execute(
            f"""
            CREATE TABLE customers AS
            SELECT i AS customer_id,
                   ['East','North','South','West'][1 + i % 4] AS region,
                   ['local','acme','globex'][1 + i % 3] AS tenant_code
            FROM range(1, {customers + 1}) t(i);
            CREATE TABLE orders AS
            SELECT i AS order_id, 1 + (hash(i) % {customers})::INTEGER AS customer_id,
                   DATE '2023-01-01' + (hash(i * 7) % 730)::INTEGER AS order_date,
                   ((hash(i * 13) % 50000) / 100.0)::DECIMAL(10,2) AS amount,
                   ['complete','returned','pending'][1 + (hash(i * 3) % 3)::INTEGER] AS status,
                   ['local','acme','globex'][1 + i % 3] AS tenant_code
            FROM range(1, {orders + 1}) t(i);
            CREATE TABLE line_items AS
            SELECT row_number() OVER () AS line_id, o.order_id,
                   1 + (hash(o.order_id + k) % 9)::INTEGER AS qty
            FROM orders o, range(3) r(k);
            """
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quarry(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quarry", *args],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def issue_token(database_url: str) -> str:
    from quarry.store import tokens as tokq
    from quarry.store.db import create_state_engine
    from quarry.store.workspaces import ensure_tenant

    engine = create_state_engine(database_url)
    with engine.begin() as conn:
        ensure_tenant(conn, "local")
        _row, secret = tokq.create_token(conn, "local", "viewer", "semantic bench")
    engine.dispose()
    return secret


def post(
    conn: http.client.HTTPConnection, headers: dict[str, str], body: dict[str, Any], query: str = ""
) -> tuple[float, int, bytes, dict[str, str]]:
    data = json.dumps(body).encode()
    started = time.perf_counter()
    conn.request("POST", QUERY_PATH + query, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    return elapsed, response.status, payload, {k.lower(): v for k, v in response.getheaders()}


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"server on {port} not ready:\n{log.read_text()[-3000:]}")


HEAVY: dict[str, Any] = {
    "topic": "sales",
    "measures": ["orders.revenue", "orders.order_count"],
    "dimensions": ["customers.region"],
    "time_dimensions": [{"dimension": "orders.order_date", "granularity": "month"}],
    "orders": [{"field": "orders.order_date", "direction": "asc"}],
}


def cold_body(i: int) -> dict[str, Any]:
    return {**HEAVY, "filters": [{"field": "orders.order_id", "op": "gt", "value": i}]}


def hammer(port: int, token: str, body: bytes, until: float, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = 0
    while time.monotonic() < until:
        conn.request("POST", QUERY_PATH, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            done += 1
    out.put(done)


def api_vs_direct(args: argparse.Namespace) -> None:
    import duckdb
    import psycopg

    db = f"quarry_bench_semantic_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{db}"')  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="quarry-semantic-bench-"))
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    env = {
        "QUARRY_DATABASE_URL": f"{base}/{db}",
        "QUARRY_BLOB_URL": (tmp / "blobs").as_uri(),
        "QUARRY_AUTH": "tokens",
        "QUARRY_LOG_LEVEL": "WARNING",
        "QUARRY_SEMANTIC_CACHE_TTL": "3600",
        "QUARRY_SEMANTIC_MAX_ROWS": str(MAX_ROWS),
    }
    root = tmp / "shop"
    started = time.perf_counter()
    make_shop(root, args.orders)
    print(f"shop: {args.orders:,} orders, built in {time.perf_counter() - started:.1f}s")
    compiled = subprocess.run(
        [sys.executable, "-m", "quarry", "compile", str(root), "--name", "shop"],
        env={**os.environ, **env, "QUARRY_DATA_DIR": str(tmp / "factory")},
        capture_output=True,
        text=True,
    )
    if compiled.returncode != 0:
        sys.exit(compiled.stdout + compiled.stderr)
    ports = [free_port(), free_port()]
    processes = []
    try:
        for n, port in enumerate(ports):
            log = tmp / f"replica{n}.log"
            processes.append(
                quarry(
                    ["serve", "--role", "serve", "--port", str(port)],
                    {**env, "QUARRY_DATA_DIR": str(tmp / f"replica{n}")},
                    log,
                )
            )
            wait_ready(port, processes[-1], log)
        token = issue_token(env["QUARRY_DATABASE_URL"])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        one = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=120)
        two = http.client.HTTPConnection("127.0.0.1", ports[1], timeout=120)
        direct = duckdb.connect(str(root / "data" / "shop.duckdb"), read_only=True)
        reused = direct.cursor()

        def sql_of(body: dict[str, Any]) -> tuple[str, list[Any]]:
            # the SQL the API runs: its row cap is a LIMIT of one row more
            capped = {**body, "limit": MAX_ROWS + 1}
            _t, status, payload, _h = post(one, headers, capped, "?sql_only=1")
            assert status == 200, payload
            doc = json.loads(payload)
            return doc["sql"], doc["params"]

        def run_direct(body: dict[str, Any]) -> tuple[float, float, int]:
            sql, params = sql_of(body)
            started = time.perf_counter()
            # exactly the connector's calls: its pooled cursor, sql() with the values,
            # Arrow out
            table = reused.sql(sql, params=params or None).to_arrow_table()
            arrow = time.perf_counter() - started
            table.to_pylist()
            return arrow, time.perf_counter() - started, table.num_rows

        # warm both sides (file pages, the replica's connections and model)
        for i in range(3):
            run_direct(cold_body(-1 - i))
            post(one, headers, cold_body(-1 - i))
        samples: dict[str, list[float]] = {
            "direct": [],
            "direct+rows": [],
            "api cold": [],
            "api hit": [],
        }
        per_round = max(1, args.samples // args.rounds)
        ratios: list[float] = []
        overheads: list[float] = []  # api cold - direct, per pair of the same request
        load_before = os.getloadavg()
        for r in range(args.rounds):
            direct_round: list[float] = []
            api_round: list[float] = []
            for i in range(r * per_round, (r + 1) * per_round):
                body = cold_body(i)
                elapsed, with_rows, rows = run_direct(body)
                direct_round.append(elapsed)
                samples["direct+rows"].append(with_rows)
                elapsed, status, payload, got = post(one, headers, body)
                assert status == 200 and got["x-quarry-cache"] == "miss", (status, payload[:200])
                assert len(json.loads(payload)["rows"]) == rows
                api_round.append(elapsed)
                overheads.append(elapsed - direct_round[-1])
            samples["direct"] += direct_round
            samples["api cold"] += api_round
            ratios.append(statistics.median(api_round) / statistics.median(direct_round))
        _e, _s, _p, first = post(one, headers, HEAVY)
        _e, _s, _p, other = post(two, headers, HEAVY)  # at once: the write may be under way
        shared = other["x-quarry-cache"]
        for _ in range(args.hits):
            elapsed, status, _payload, got = post(one, headers, HEAVY)
            assert status == 200 and got["x-quarry-cache"] == "hit"
            samples["api hit"].append(elapsed)

        print(
            f"\nquery: revenue and orders by region by month ({args.samples} cold samples, "
            f"{args.hits} hits), 1 connection"
        )
        print(f"{'':<12}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        stats = {}
        for name, values in samples.items():
            p50, p90, p99 = (percentile(values, q) for q in (0.5, 0.9, 0.99))
            stats[name] = p50
            print(
                f"{name:<12}{p50 * 1e3:>10.3f}{p90 * 1e3:>10.3f}{p99 * 1e3:>10.3f}"
                f"{statistics.fmean(values) * 1e3:>10.3f}"
            )
        cold_ratio = statistics.median(ratios)
        load_after = os.getloadavg()
        print(
            f"api cold - direct, per pair: p25 {percentile(overheads, 0.25) * 1e3:.3f} ms, "
            f"p50 {percentile(overheads, 0.5) * 1e3:.3f} ms; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} cores)"
        )
        print(
            f"api cold / direct, ratio of p50s per round ({args.rounds} rounds of {per_round}): "
            + ", ".join(f"{x:.2f}x" for x in ratios)
        )
        print(
            f"api cold / direct: median of rounds {cold_ratio:.2f}x, worst round "
            f"{max(ratios):.2f}x (goal < 1.2x: {'met' if cold_ratio < 1.2 else 'NOT met'}); "
            f"all samples p50 {stats['api cold'] / stats['direct']:.2f}x; "
            f"vs direct+rows {stats['api cold'] / stats['direct+rows']:.2f}x; api hit p50 "
            f"{stats['api hit'] * 1e3:.3f} ms (goal < 2 ms: "
            f"{'met' if stats['api hit'] < 0.002 else 'NOT met'}); the 2nd replica asked right "
            f"after the 1st answered: {shared} (first was {first['x-quarry-cache']}; the "
            "store write follows the response)"
        )

        queue: Any = multiprocessing.Queue()
        until = time.monotonic() + args.duration
        data = json.dumps(HEAVY).encode()
        workers = [
            multiprocessing.Process(target=hammer, args=(ports[n % 2], token, data, until, queue))
            for n in range(args.clients)
        ]
        for w in workers:
            w.start()
        total = sum(queue.get() for _ in workers)
        for w in workers:
            w.join()
        print(
            f"cached hits, {args.clients} clients over 2 replicas, {args.duration:.0f}s: "
            f"{total / args.duration:,.0f} requests/s"
        )
        reused.close()
        direct.close()
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=30)
        with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--compile-rounds", type=int, default=5)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4, help="Cold samples split in rounds.")
    parser.add_argument("--hits", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--skip-api", action="store_true", help="Compile latency only.")
    args = parser.parse_args()

    results = compile_latency(args.views, args.compile_rounds)
    print(f"compile: 40 queries on a {args.views}-view model, {args.compile_rounds} rounds")
    print(f"{'':<14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in results.items():
        print(
            f"{name:<14}{percentile(values, 0.5) * 1e3:>10.3f}"
            f"{percentile(values, 0.99) * 1e3:>10.3f}{max(values) * 1e3:>10.3f}"
        )
    for name in ("cold", "new values"):
        p50 = percentile(results[name], 0.5)
        print(
            f"compile p50 ({name}) {p50 * 1e3:.3f} ms: goal < 2 ms "
            f"{'met' if p50 < 0.002 else 'NOT met'}"
        )
    if not args.skip_api:
        api_vs_direct(args)


if __name__ == "__main__":
    main()
