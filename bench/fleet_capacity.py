"""Fleet capacity: where a real fleet on this machine stops, resource by resource.

Starts a real fleet as processes (``quarry.fleet.launcher``, the code behind
``quarry fleet up``): one Postgres database created for the run, one Factory
compiling the demo workspace (plus a one-task ``workflows/ping`` to measure the run
machinery rather than DuckDB), ``--serve`` replicas and ``--workers`` workers. Then,
over real sockets, an **open-loop** generator (httpx async: request *i* is sent at
``t0 + i/rate`` whether or not earlier ones returned, and latency counts from that
scheduled instant, so a saturated server shows up as climbing latency, not as a
politely slower client) offers increasing rates to:

* ``hello``: a raw uvicorn hello-world (same uvicorn arguments) — the ceiling of this
  generator + uvicorn on this machine; every other row is also shown as a ratio to it;
* ``definitions``, ``app data``, ``semantic``: reads on ONE serve replica;
* ``run create``: ``POST .../runs`` of ``workflows/ping`` on one replica;
* ``run drain``: a backlog of runs (``runs:batch``) drained by the workers — runs/s
  per worker and the queue claim rate (``tasks.started_at``), beside the ceiling of
  single-row autocommit ``INSERT`` s/s on the same Postgres;
* ``sse``: F followers held open on one replica (workers SIGSTOPped so runs stay
  queued), a probe read rate's p99 with them open, the replica's RSS, then the
  workers resumed and the time until every follower saw its run end;
* Postgres connections per process (``pg_stat_activity.client_port`` mapped to the
  fleet's pids through ``/proc``), sampled at the end of every loaded step.

The knee of a ramp is the highest offered rate that was achieved (>= 95 %), had no
errors, and whose p99 stayed under ``max(5 x p99 at the lowest rate, 50 ms)``. Each
step runs ``--rounds`` times (interleaved ramps); tables show the median round and
the worst round's p99.

This machine is small and shared: the generator, Postgres and every fleet process
compete for the same cores, so the figures are a floor and the *ratios* and the
*shape* (which resource saturates first) are what transfer to a real deployment.

Two more scenarios, each on its own (``--scenario``):

* ``workspaces``: one Factory process (``quarry serve --role ide``) on its own
  Postgres database; workspaces registered (clone + compile, ``--concurrency`` at a
  time) up to each step of ``--workspaces``; per step registrations/min, a burst of
  20 recompiles (compiles/min), the workspace list's latency, the Factory's RSS, the
  clone cache on disk and the state database's size; at the end the Factory's
  restart time (its start-up pass over every workspace);
* ``restart``: one Factory with the last ``--workspaces`` step of git workspaces
  (registered and cloned straight, then compiled by a first start: the cold pass);
  then ``--rounds`` restarts, each with ``--interrupted`` compiles left pending and
  ``--wiped`` working copies deleted: seconds to ``/readyz``, to the first IDE file
  listing and git status, to the end of the start-up pass, and what it compiled;
  beside it the same restart of a one-workspace Factory (what any start costs) and,
  with ``--compare-src``, an older Quarry's restart from those sources;
* ``start-pass``: the start-up pass's per-workspace part (its queries, one ``stat``
  each) with the last ``--workspaces`` step inserted straight, e.g. 10,000;
* ``schedules``: one ``quarry driver`` with ``--schedules`` schedules firing every
  second (each step on its own database): fires, misses, duplicates, delay p50/p99;
* ``agents``: ``--turns`` one-tool agent turns at once in one process against the
  scripted model server (``tests/support/model_server.py``, ``--model-ms`` per call):
  turns/s, turn p50/p99 and RSS per step.

    .venv/bin/python bench/fleet_capacity.py --quick     # smoke: ~1 minute
    .venv/bin/python bench/fleet_capacity.py             # the full run (~10 minutes)
    .venv/bin/python bench/fleet_capacity.py --scenario workspaces --workspaces 100,300,1000,2000
    .venv/bin/python bench/fleet_capacity.py --scenario agents --turns 25,50,100,200
    .venv/bin/python bench/fleet_capacity.py --scenario restart --workspaces 2000 \
        --rounds 2 --compare-src /tmp/old/src   # git archive <commit> src | tar -x -C /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ADMIN_DSN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WS = "/api/v1/workspaces/shop"
PING = (
    "description: The run machinery only.\n"
    "tasks:\n  - name: pong\n    type: formatter\n    template: pong\n"
)
SEMANTIC = {
    "topic": "sales",
    "measures": ["orders.revenue", "orders.order_count"],
    "dimensions": ["orders.region"],
}


# -- the ceiling server, started by this file with --hello-server PORT ---------------
def hello_server(port: int) -> None:
    import uvicorn

    body = b'{"ok":true}'
    head = [(b"content-type", b"application/json"), (b"content-length", b"11")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# -- open-loop load ------------------------------------------------------------------
@dataclass
class Step:
    rate: float
    achieved: float
    ok: int
    errors: int
    dropped: int
    p50: float
    p99: float
    worst: float
    connections: dict[str, int] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def open_loop(
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    rate: float,
    duration: float,
    max_inflight: int = 512,
) -> Step:
    latencies: list[float] = []
    errors = dropped = 0
    inflight = 0
    limits = httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight)
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:

        async def one(scheduled: float) -> None:
            nonlocal errors, inflight
            try:
                response = await send(client)
                if response.status_code >= 400:
                    errors += 1
                else:
                    latencies.append(time.perf_counter() - scheduled)
            except httpx.HTTPError:
                errors += 1
            finally:
                inflight -= 1

        tasks: list[asyncio.Task[None]] = []
        total = int(rate * duration)
        t0 = time.perf_counter()
        for i in range(total):
            at = t0 + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if inflight >= max_inflight:
                dropped += 1
                continue
            inflight += 1
            tasks.append(asyncio.create_task(one(at)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return Step(
        rate=rate,
        achieved=len(latencies) / elapsed,
        ok=len(latencies),
        errors=errors,
        dropped=dropped,
        p50=_pct(latencies, 0.50),
        p99=_pct(latencies, 0.99),
        worst=max(latencies, default=float("nan")),
    )


def knee(steps: list[Step]) -> Step | None:
    if not steps:
        return None
    base = max(steps[0].p99 * 5, 0.050)
    good = [
        s
        for s in steps
        if s.achieved >= 0.95 * s.rate and s.errors == 0 and s.dropped == 0 and s.p99 <= base
    ]
    return max(good, key=lambda s: s.rate) if good else None


# -- Postgres connections per process --------------------------------------------------
def _socket_inodes(pid: int) -> set[str]:
    found: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                found.add(link[8:-1])
    except OSError:
        pass
    return found


def _local_ports_to_pg() -> dict[str, int]:
    """socket inode -> local port, for TCP connections whose remote port is 5432."""
    out: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if int(remote.rsplit(":", 1)[1], 16) == 5432:
                out[inode] = int(local.rsplit(":", 1)[1], 16)
    return out


def pg_connections(database: str, pids: dict[str, int]) -> dict[str, int]:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        ports = {
            int(r[0])
            for r in conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s AND client_port > 0",
                (database,),
            )
        }
    by_inode = _local_ports_to_pg()
    counts: dict[str, int] = {}
    for name, pid in pids.items():
        mine = {by_inode[i] for i in _socket_inodes(pid) if i in by_inode}
        counts[name] = len(mine & ports)
    counts["total"] = len(ports)
    return counts


# -- the fleet -----------------------------------------------------------------------
@dataclass
class Fleet:
    database: str
    url: str
    token: str
    replicas: list[str]
    pids: dict[str, int]
    worker_pids: list[int]
    factory_pid: int
    launcher: Any

    def pause_runners(self) -> None:
        """SIGSTOP every process that claims runs: the workers and the Factory (role
        ``ide`` works runs in-process by default; compose turns that off)."""
        for pid in [*self.worker_pids, self.factory_pid]:
            os.kill(pid, signal.SIGSTOP)

    def resume_workers(self) -> None:
        for pid in self.worker_pids:
            with _suppress():
                os.kill(pid, signal.SIGCONT)

    def resume_all(self) -> None:
        self.resume_workers()
        with _suppress():
            os.kill(self.factory_pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_fleet(args: argparse.Namespace, root: Path) -> Fleet:
    from quarry.demo import create_demo_workspace
    from quarry.fleet.launcher import FleetPlan, Launcher
    from quarry.store import tokens as tokq
    from quarry.store.db import create_state_engine
    from quarry.store.migrate import migrate
    from quarry.store.workspaces import ensure_tenant

    database = f"quarry_capacity_{os.getpid()}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = re.sub(r"/[^/]*$", f"/{database}", ADMIN_DSN)
    engine = create_state_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_tenant(conn, "local")
        _row, token = tokq.create_token(conn, "local", "admin", "fleet capacity bench")
    engine.dispose()
    workspace = create_demo_workspace(root / "shop")
    (workspace / "workflows" / "ping.workflow.yml").write_text(PING)
    plan = FleetPlan(
        serve=args.serve,
        workers=args.workers,
        database_url=url,
        blob_url=(root / "blobs").as_uri(),
        data_dir=root / "fleet",
        workspace=workspace,
        name="shop",
        grace=10,
        extra_env={"QUARRY_SKIP_MIGRATIONS": "1", "QUARRY_LOG_LEVEL": "WARNING"},
    )
    launcher = Launcher(plan, echo=lambda line: print(line, file=sys.stderr))
    replicas = await launcher.start()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10, trust_env=False, headers=headers) as client:
        deadline = time.monotonic() + 180
        while True:
            got = await client.get(f"{replicas[0].url}{WS}/definitions")
            if got.status_code == 200 and got.json().get("definitions"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo workspace never compiled: {got.text[:300]}")
            await asyncio.sleep(0.2)
        # App data is a stored result: run the app once so the read has something to serve.
        await client.post(
            f"{replicas[0].url}{WS}/runs", json={"kind": "app", "name": "apps/sales_overview"}
        )
        data = f"{replicas[0].url}{WS}/apps/apps/sales_overview/data"
        while (await client.get(data)).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the app run never stored its result")
            await asyncio.sleep(0.2)
    return Fleet(
        database=database,
        url=url,
        token=token,
        replicas=[r.url for r in replicas if r.url],
        pids={c.name: c.pid for c in launcher.children},
        worker_pids=[c.pid for c in launcher.children if c.name.startswith("worker")],
        factory_pid=next(c.pid for c in launcher.children if c.name == "factory"),
        launcher=launcher,
    )


async def stop_fleet(fleet: Fleet) -> None:
    fleet.resume_all()
    await fleet.launcher.stop()
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{fleet.database}" WITH (FORCE)')


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


# -- scenarios -----------------------------------------------------------------------
def readers(
    fleet: Fleet, hello: str
) -> dict[str, Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]]:
    h = {"Authorization": f"Bearer {fleet.token}"}
    r = fleet.replicas[0]
    return {
        "hello (ceiling)": lambda c: c.get(f"{hello}/"),
        "definitions": lambda c: c.get(f"{r}{WS}/definitions", headers=h),
        "app data": lambda c: c.get(f"{r}{WS}/apps/apps/sales_overview/data", headers=h),
        "semantic": lambda c: c.post(f"{r}{WS}/semantic/query", json=SEMANTIC, headers=h),
        "run create": lambda c: c.post(f"{r}{WS}/runs", json={"name": "workflows/ping"}, headers=h),
    }


async def ramp_all(
    fleet: Fleet, hello: str, rates: list[float], duration: float, rounds: int
) -> dict[str, list[list[Step]]]:
    """results[scenario][rate index] = the rounds' steps."""
    scenarios = readers(fleet, hello)
    results: dict[str, list[list[Step]]] = {n: [[] for _ in rates] for n in scenarios}
    for rnd in range(rounds):
        for name, send in scenarios.items():
            for i, rate in enumerate(rates):
                step = await open_loop(send, rate, duration)
                step.connections = pg_connections(fleet.database, fleet.pids)
                results[name][i].append(step)
                print(
                    f"  round {rnd + 1} {name:<16} {rate:>6g}/s -> {step.achieved:7.1f}/s "
                    f"p99 {step.p99 * 1000:7.1f} ms err {step.errors} drop {step.dropped}",
                    file=sys.stderr,
                )
                if step.achieved < 0.5 * rate and step.errors + step.dropped > 0:
                    break  # far past the knee: the next rates only add noise and load
    return results


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


async def drain(fleet: Fleet, backlog: int) -> dict[str, float]:
    """Enqueue ``backlog`` ping runs at once, time until the workers finished them."""
    h = {"Authorization": f"Bearer {fleet.token}"}
    done_sql = "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"
    before = _count(fleet.url, done_sql)
    fleet.pause_runners()
    async with httpx.AsyncClient(timeout=60, trust_env=False, headers=h) as client:
        t0 = time.perf_counter()
        left = backlog
        while left:
            n = min(left, 100)
            got = await client.post(
                f"{fleet.replicas[0]}{WS}/runs:batch",
                json={"runs": [{"name": "workflows/ping"} for _ in range(n)]},
            )
            got.raise_for_status()
            left -= n
        enqueued = time.perf_counter() - t0
    t0 = time.perf_counter()
    fleet.resume_workers()  # the backlog is all there: time the workers alone
    peak: dict[str, int] = {}
    while _count(fleet.url, done_sql) - before < backlog:
        now = pg_connections(fleet.database, fleet.pids)
        peak = {k: max(v, peak.get(k, 0)) for k, v in now.items()}
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - t0
    fleet.resume_all()
    with psycopg.connect(fleet.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(started_at) - min(started_at)), count(*) FROM tasks "
            "WHERE started_at > now() - make_interval(secs => %s)",
            (elapsed + 5,),
        ).fetchone()
    span, claimed = (float(row[0] or 0), int(row[1] or 0)) if row else (0.0, 0)
    workers = max(len(fleet.worker_pids), 1)
    return {
        "backlog": backlog,
        "enqueue_s": enqueued,
        "drain_s": elapsed,
        "runs_per_s": backlog / elapsed,
        "runs_per_s_per_worker": backlog / elapsed / workers,
        "claims_per_s": claimed / span if span > 0 else float("nan"),
        "peak_connections": peak,  # type: ignore[dict-item]
    }


def insert_ceiling(url: str, seconds: float) -> float:
    """Single-row autocommit INSERTs per second from one connection (a commit each)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_ceiling (id bigserial, payload jsonb)")
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conn.execute("INSERT INTO bench_ceiling (payload) VALUES (%s)", ('{"a":1}',))
            n += 1
        return n / (time.perf_counter() - t0)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sse(fleet: Fleet, followers: int, probe_rate: float, duration: float) -> dict[str, Any]:
    """F followers on one replica while workers are stopped; then resume and time the end."""
    h = {"Authorization": f"Bearer {fleet.token}"}
    replica = fleet.replicas[0]
    replica_pid = fleet.pids["serve-1"]
    fleet.pause_runners()
    try:
        limits = httpx.Limits(max_connections=followers + 8)
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(300, connect=30), trust_env=False, headers=h, limits=limits
        ) as client:
            runs: list[str] = []
            left = followers
            while left:
                n = min(left, 100)
                got = await client.post(
                    f"{replica}{WS}/runs:batch",
                    json={"runs": [{"name": "workflows/ping"} for _ in range(n)]},
                )
                got.raise_for_status()
                runs += [r["id"] for r in got.json()["runs"]]
                left -= n
            opened = asyncio.Event()
            open_count = 0
            ended: list[float] = []
            failed = 0
            reasons: dict[str, int] = {}

            async def follow(run_id: str) -> None:
                nonlocal open_count, failed
                try:
                    async with client.stream("GET", f"{replica}/api/v1/runs/{run_id}/events") as s:
                        if s.status_code != 200:
                            failed += 1
                            key = f"HTTP {s.status_code}"
                            reasons[key] = reasons.get(key, 0) + 1
                            return
                        open_count += 1
                        if open_count == followers:
                            opened.set()
                        async for line in s.aiter_lines():
                            if line == "event: end":
                                ended.append(time.perf_counter())
                                return
                except httpx.HTTPError as exc:
                    failed += 1
                    reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1
                finally:
                    if open_count + failed >= followers:
                        opened.set()

            streams = [asyncio.create_task(follow(r)) for r in runs]
            await asyncio.wait_for(opened.wait(), 120)
            rss = _rss_kib(replica_pid)
            conns = pg_connections(fleet.database, fleet.pids)
            probe = await open_loop(
                lambda c: c.get(f"{replica}{WS}/definitions", headers=h), probe_rate, duration
            )
            resumed = time.perf_counter()
            fleet.resume_workers()
            await asyncio.wait_for(asyncio.gather(*streams), 600)
    finally:
        fleet.resume_all()
    return {
        "followers": followers,
        "open": open_count,
        "failed": failed,
        "reasons": reasons,
        "replica_rss_mib": rss / 1024,
        "probe": probe,
        "connections": conns,
        "all_ended_s": (max(ended) - resumed) if ended else float("nan"),
    }


# -- report --------------------------------------------------------------------------
def _ms(v: float) -> str:
    return "-" if v != v else f"{v * 1000:.1f}"


def report(
    results: dict[str, list[list[Step]]],
    rates: list[float],
    ceiling_inserts: float,
    drains: list[dict[str, Any]],
    sses: list[dict[str, Any]],
    args: argparse.Namespace,
) -> None:
    print(
        f"# fleet capacity: {args.serve} serve, {args.workers} workers, 1 Factory, 1 Postgres; "
        f"{os.cpu_count()} cores SHARED with other work (load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}); {args.rounds} round(s) x "
        f"{args.duration:g}s per step, open loop"
    )
    print("\n## Ramps on ONE serve replica (median round; p99 worst = worst round)\n")
    print(
        "| scenario | offered/s | achieved/s | p50 ms | "
        "p99 ms | p99 worst ms | errors | pg conns (replica/total) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    knees: dict[str, Step | None] = {}
    for name, per_rate in results.items():
        medians: list[Step] = []
        for i, steps in enumerate(per_rate):
            if not steps:
                continue
            mid = sorted(steps, key=lambda s: s.p99)[len(steps) // 2]
            medians.append(mid)
            worst = max(s.p99 for s in steps)
            conns = mid.connections
            print(
                f"| {name} | {rates[i]:g} | {statistics.median(s.achieved for s in steps):.1f} | "
                f"{_ms(mid.p50)} | {_ms(mid.p99)} | {_ms(worst)} | "
                f"{sum(s.errors + s.dropped for s in steps)} | "
                f"{conns.get('serve-1', 0)}/{conns.get('total', 0)} |"
            )
        knees[name] = knee(medians)
    hello = knees.get("hello (ceiling)")
    print("\n## Knees (p99 <= max(5 x lowest-rate p99, 50 ms), >= 95 % achieved, no errors)\n")
    print("| scenario | knee req/s | p99 ms at knee | ratio to hello ceiling |")
    print("|---|---|---|---|")
    for name, k in knees.items():
        if k is None:
            print(f"| {name} | below {rates[0]:g} | - | - |")
            continue
        ratio = f"{k.rate / hello.rate:.2f}" if hello else "-"
        top = " (top of ramp: not reached)" if k.rate == rates[-1] else ""
        print(f"| {name} | {k.rate:g}{top} | {_ms(k.p99)} | {ratio} |")
    print("\n## Run drain (backlog of workflows/ping through the queue)\n")
    print(
        "| backlog | runs/s | runs/s per worker | "
        "queue claims/s | ceiling INSERT/s | runs/s : INSERT/s | peak pg conns |"
    )
    print("|---|---|---|---|---|---|---|")
    for d in drains:
        print(
            f"| {d['backlog']} | {d['runs_per_s']:.1f} | {d['runs_per_s_per_worker']:.1f} | "
            f"{d['claims_per_s']:.1f} | {ceiling_inserts:.0f} | "
            f"1 : {ceiling_inserts / d['runs_per_s']:.0f} | {json.dumps(d['peak_connections'])} |"
        )
    print("\n## SSE followers on one replica (workers stopped, then resumed)\n")
    print(
        "| followers | open | failed | "
        "replica RSS MiB | probe p99 ms (definitions) | "
        "all ended after resume s | pg conns replica/total |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in sses:
        p: Step = s["probe"]
        c = s["connections"]
        print(
            f"| {s['followers']} | {s['open']} | {s['failed']} {json.dumps(s['reasons'])} | "
            f"{s['replica_rss_mib']:.0f} | "
            f"{_ms(p.p99)} @ {p.rate:g}/s | {s['all_ended_s']:.1f} | "
            f"{c.get('serve-1', 0)}/{c.get('total', 0)} |"
        )


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="quarry-capacity-"))
    hello_port = _free_port()
    hello = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [sys.executable, __file__, "--hello-server", str(hello_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fleet: Fleet | None = None
    try:
        fleet = await start_fleet(args, root)
        rates = [float(r) for r in args.rates.split(",")]
        results = await ramp_all(
            fleet, f"http://127.0.0.1:{hello_port}", rates, args.duration, args.rounds
        )
        ceiling = insert_ceiling(fleet.url, args.duration)
        drains = [await drain(fleet, b) for b in (int(x) for x in args.backlogs.split(","))]
        sses = [
            await sse(fleet, int(f), rates[0], args.duration) for f in args.followers.split(",")
        ]
        report(results, rates, ceiling, drains, sses, args)
    finally:
        if fleet is not None:
            await stop_fleet(fleet)
        hello.terminate()
        hello.wait(10)
        shutil.rmtree(root, ignore_errors=True)


# -- workspaces on one Factory (--scenario workspaces) ------------------------------
def _seed_origin(root: Path, defs: int) -> Path:
    """A bare git origin of a generated workspace of ``defs`` definitions."""
    sys.path.insert(0, str(BENCH_DIR))
    from _workspace_gen import generate_workspace

    seed, origin = root / "seed", root / "origin.git"
    generate_workspace(seed, defs)
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "seed"]):
        subprocess.run([*git, *args], cwd=seed, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run([*git, "push", "-q", str(origin), "main"], cwd=seed, check=True)
    return origin


def _du_kib(path: Path) -> int:
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else 0


class FactoryProcess:
    """One Factory (``quarry serve --role ide``) on its own Postgres database."""

    def __init__(self, root: Path, suffix: str = "") -> None:
        from quarry.store import tokens as tokq
        from quarry.store.db import create_state_engine
        from quarry.store.migrate import migrate
        from quarry.store.workspaces import ensure_tenant

        self.root = root
        self.database = f"quarry_capacity_ws_{os.getpid()}{suffix}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.dsn = re.sub(r"/[^/]*$", f"/{self.database}", ADMIN_DSN)
        engine = create_state_engine(self.dsn)
        migrate(engine)
        with engine.begin() as conn:
            ensure_tenant(conn, "local")
            _row, self.token = tokq.create_token(conn, "local", "admin", "capacity bench")
        engine.dispose()
        self.workspaces_dir = root / "clones"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 600, src: str | None = None) -> float:
        """Start it (from the Quarry sources under ``src`` when given, e.g. an older
        commit's ``git archive``); seconds until ``/readyz`` answers 200."""
        port = _free_port()
        env = {
            **os.environ,
            **({"PYTHONPATH": src} if src else {}),
            "QUARRY_DATABASE_URL": self.dsn,
            "QUARRY_BLOB_URL": (self.root / "blobs").as_uri(),
            "QUARRY_DATA_DIR": str(self.root / "data"),
            "QUARRY_WORKSPACES_DIR": str(self.workspaces_dir),
            "QUARRY_GIT_ALLOW_LOCAL_ORIGINS": "1",
            "QUARRY_COMPILE_DEBOUNCE_SECONDS": "0",
            "QUARRY_INPROCESS_WORKERS": "off",
            "QUARRY_SKIP_MIGRATIONS": "1",
            "QUARRY_LOG_LEVEL": "WARNING",
        }
        log = (self.root / "factory.log").open("ab")
        started = time.monotonic()
        self.started_wall = time.time()
        self.started = started
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quarry",
                "serve",
                "--role",
                "ide",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                tail = (self.root / "factory.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Factory exited:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.1)
        raise RuntimeError("the Factory never became ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


async def _timed_calls(
    calls: list[Callable[[], Awaitable[httpx.Response]]], concurrency: int
) -> tuple[float, list[float], int]:
    """(wall seconds, latency of each call, failures), ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one(call: Callable[[], Awaitable[httpx.Response]]) -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            try:
                got = await call()
                if got.status_code >= 300:
                    failures += 1
            except httpx.HTTPError:
                failures += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started, latencies, failures


async def workspaces_scan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Register workspaces (clone + compile each) up to each step of ``--workspaces``;
    at each step: registrations/min, recompiles/min in a burst (the compile path under
    concurrency), the workspace list's latency, Factory RSS, clone cache and state
    database size; at the last step the Factory's restart time (its start-up pass)."""
    root = Path(tempfile.mkdtemp(prefix="quarry-capacity-ws-"))
    factory = FactoryProcess(root)
    rows: list[dict[str, Any]] = []
    try:
        origin = _seed_origin(root, args.defs)
        factory.start()
        headers = {"Authorization": f"Bearer {factory.token}"}
        have = 0
        async with httpx.AsyncClient(
            base_url=factory.url, timeout=600, trust_env=False, headers=headers
        ) as client:
            for target in (int(x) for x in args.workspaces.split(",")):
                names = [f"ws{i:05d}" for i in range(have, target)]

                def register(name: str) -> Callable[[], Awaitable[httpx.Response]]:
                    body = {"name": name, "origin": str(origin)}
                    return lambda: client.post("/api/v1/workspaces", json=body)

                wall, lat, failed = await _timed_calls(
                    [register(n) for n in names], args.concurrency
                )
                have = target
                burst = [f"ws{i:05d}" for i in range(0, target, max(1, target // 20))][:20]

                def recompile(name: str) -> Callable[[], Awaitable[httpx.Response]]:
                    return lambda: client.post(f"/api/v1/workspaces/{name}/compile")

                c_wall, c_lat, c_failed = await _timed_calls(
                    [recompile(n) for n in burst], args.concurrency
                )
                listing = []
                for _ in range(5):
                    started = time.perf_counter()
                    got = await client.get("/api/v1/workspaces")
                    listing.append(time.perf_counter() - started)
                    assert got.status_code == 200, got.text[:200]
                with psycopg.connect(factory.dsn) as conn:
                    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                db_kib = int(row[0]) // 1024 if row else 0
                assert factory.process is not None
                rows.append(
                    {
                        "workspaces": target,
                        "registered": len(names),
                        "register_per_min": 60 * len(names) / wall if names else 0.0,
                        "register_p50": statistics.median(lat) if lat else 0.0,
                        "register_p99": _pct(lat, 0.99) if lat else 0.0,
                        "failed": failed + c_failed,
                        "compiles_per_min": 60 * len(burst) / c_wall,
                        "compile_p50": statistics.median(c_lat),
                        "list_p50": statistics.median(listing),
                        "rss_mib": _rss_kib(factory.process.pid) / 1024,
                        "clones_mib": _du_kib(factory.workspaces_dir) / 1024,
                        "db_mib": db_kib / 1024,
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr)
        factory.stop()
        restart = factory.start()
        assert factory.process is not None
        rows[-1]["restart_s"] = restart
        rows[-1]["rss_after_restart_mib"] = _rss_kib(factory.process.pid) / 1024
    finally:
        factory.close()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def report_workspaces(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n## Workspaces on one Factory ({args.defs} definitions each, "
        f"{args.concurrency} requests at a time)\n"
    )
    print(
        "| workspaces | registered (clone + compile) /min | p50 / p99 | recompiles/min "
        "(burst of 20) | recompile p50 | list p50 | Factory RSS MiB | clone cache MiB "
        "| state DB MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workspaces']} | {r['register_per_min']:.0f} | {_ms(r['register_p50'])} / "
            f"{_ms(r['register_p99'])} | {r['compiles_per_min']:.0f} | {_ms(r['compile_p50'])} "
            f"| {_ms(r['list_p50'])} | {r['rss_mib']:.0f} | {r['clones_mib']:.1f} "
            f"| {r['db_mib']:.1f} |"
        )
    last = rows[-1]
    print(
        f"\nFactory restart with {last['workspaces']} workspaces: ready in "
        f"{last['restart_s']:.1f} s, RSS {last['rss_after_restart_mib']:.0f} MiB; "
        f"failures: {sum(r['failed'] for r in rows)}"
    )
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        n = b["workspaces"] - a["workspaces"]
        per = {k: (b[k] - a[k]) / n for k in ("rss_mib", "clones_mib", "db_mib")}
        at = {k: a[k] + per[k] * (10000 - a["workspaces"]) for k in per}
        print(
            "per added workspace: "
            + ", ".join(f"{k} {v * 1024:.1f} KiB" for k, v in per.items())
            + f"; extrapolated to 10,000: RSS {at['rss_mib']:.0f} MiB, clones "
            f"{at['clones_mib']:.0f} MiB, state DB {at['db_mib']:.0f} MiB"
        )


# -- Factory restart with many workspaces (--scenario restart) -----------------------
def _seed_workspaces(factory: FactoryProcess, origin: Path, count: int) -> float:
    """Register ``count`` git workspaces straight in the state database and clone each
    working copy with the Factory's own clone (4 at a time): what ``count`` API
    registrations leave behind, minus their compiles (the first start does those)."""
    from concurrent.futures import ThreadPoolExecutor

    from quarry.factory import git as fgit
    from quarry.factory.workspaces import clone_path, register_origin
    from quarry.store.db import create_state_engine

    started = time.perf_counter()
    engine = create_state_engine(factory.dsn)
    runner = fgit.GitRunner(timeout=120, credentials={})
    try:
        rows = [
            register_origin(
                engine, "local", f"ws{i:05d}", str(origin), branch=None, allow_local=True
            )
            for i in range(count)
        ]
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda ws: fgit.clone(
                        runner, ws.source, clone_path(factory.workspaces_dir, ws), "main"
                    ),
                    rows,
                )
            )
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _metric(url: str, name: str) -> float | None:
    """One unlabelled figure of the Factory's ``/metrics`` (None when it has none)."""
    try:
        got = httpx.get(f"{url}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    for line in got.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _finished_since(dsn: str, since: float) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM compile_status WHERE state NOT IN ('pending', 'compiling') "
            "AND finished_at >= to_timestamp(%s)",
            (since,),
        ).fetchone()
    return int(row[0]) if row else 0


def _interrupt(factory: FactoryProcess, names: list[str], wipe: list[str]) -> None:
    """What a stop in the middle of edits leaves: ``names``' compiles pending (an
    edit's debounced compile not run yet), ``wipe``'s working copies gone."""
    with psycopg.connect(factory.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE compile_status SET state = 'pending', requested_at = now() "
            "WHERE workspace_id IN (SELECT id FROM workspaces WHERE name = ANY(%s))",
            (names,),
        )
    for name in wipe:
        shutil.rmtree(factory.workspaces_dir / "local" / name, ignore_errors=True)


def _timed_restart(
    factory: FactoryProcess, src: str | None, expected: int, probe: str, timeout: float
) -> dict[str, float]:
    """Start the Factory; seconds to ``/readyz`` 200, to the first IDE file listing and
    git status of ``probe`` (a workspace the start-up pass needs nothing for), and to
    the end of the pass (``expected`` compiles finished since the start)."""
    load0 = os.getloadavg()[0]
    ready = factory.start(timeout=timeout, src=src)
    headers = {"Authorization": f"Bearer {factory.token}"}
    out: dict[str, float] = {"ready_s": ready, "load_start": load0}
    with httpx.Client(base_url=factory.url, headers=headers, timeout=timeout) as client:
        for key, path in (("files_s", "files"), ("git_s", "git/status")):
            got = client.get(f"/api/v1/workspaces/{probe}/{path}")
            assert got.status_code == 200, got.text[:300]
            out[key] = time.monotonic() - factory.started
        # the same two again: an IDE request's latency while the pass runs (or not)
        started = time.perf_counter()
        assert client.get(f"/api/v1/workspaces/{probe}/git/status").status_code == 200
        out["git_again_ms"] = (time.perf_counter() - started) * 1000
    while time.monotonic() - factory.started < timeout:
        if _finished_since(factory.dsn, factory.started_wall) >= expected:
            break
        time.sleep(0.2)
    out["pass_s"] = time.monotonic() - factory.started
    out["compiled"] = _finished_since(factory.dsn, factory.started_wall)
    assert factory.process is not None
    out["rss_mib"] = _rss_kib(factory.process.pid) / 1024
    out["load_end"] = os.getloadavg()[0]
    return out


def restart_scan(args: argparse.Namespace) -> dict[str, Any]:
    """Seed ``--workspaces`` (the last step) registered and cloned git workspaces, let
    a first start compile them all (the cold pass), then restart ``--rounds`` times,
    each time with ``--interrupted`` compiles left pending and ``--wiped`` working
    copies deleted; with ``--compare-src`` each round restarts an older Quarry too
    (its every-workspace start-up pass) from those sources, alternating."""
    count = int(args.workspaces.split(",")[-1])
    root = Path(tempfile.mkdtemp(prefix="quarry-capacity-restart-"))
    factory = FactoryProcess(root)
    out: dict[str, Any] = {"workspaces": count, "rounds": []}
    try:
        origin = _seed_origin(root, args.defs)
        out["seed_s"] = _seed_workspaces(factory, origin, count)
        print(f"  seeded {count} in {out['seed_s']:.0f} s", file=sys.stderr)
        factory.start(timeout=args.restart_timeout)
        while time.monotonic() - factory.started < args.restart_timeout:
            if _finished_since(factory.dsn, factory.started_wall) >= count:
                break
            time.sleep(1)
        out["cold_pass_s"] = time.monotonic() - factory.started
        out["cold_compiled"] = _finished_since(factory.dsn, factory.started_wall)
        print(f"  cold pass {out['cold_pass_s']:.0f} s", file=sys.stderr)
        factory.stop()
        names = [f"ws{i:05d}" for i in range(count)]
        probe = names[-1]
        interrupted = names[: args.interrupted]
        wiped = names[args.interrupted : args.interrupted + args.wiped]
        variants: list[tuple[str, str | None, int]] = [("now", None, len(interrupted) + len(wiped))]
        if args.compare_src:
            variants.insert(0, ("before", args.compare_src, count))
        # the same start on an empty database: what a start costs with no workspace
        (root / "empty").mkdir()
        empty = FactoryProcess(root / "empty", suffix="_empty")
        try:
            _seed_workspaces(empty, origin, 1)
            empty.start(timeout=args.restart_timeout)
            empty.stop()
            for n in range(args.rounds):
                _interrupt(empty, [], [])
                base: dict[str, Any] = {"label": "now, 1 workspace", "round": n + 1}
                base["expected"] = 0
                base.update(_timed_restart(empty, None, 0, "ws00000", args.restart_timeout))
                out["rounds"].append(base)
                print(f"  {base}", file=sys.stderr)
                empty.stop()
        finally:
            empty.close()
        for n in range(args.rounds):
            for label, src, expected in variants:
                _interrupt(factory, interrupted, wiped)
                row: dict[str, Any] = {"label": label, "round": n + 1, "expected": expected}
                row.update(_timed_restart(factory, src, expected, probe, args.restart_timeout))
                out["rounds"].append(row)
                print(f"  {row}", file=sys.stderr)
                factory.stop()
    finally:
        factory.close()
        shutil.rmtree(root, ignore_errors=True)
    return out


def report_restart(out: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n## Factory restart with {out['workspaces']} workspaces ({args.defs} definitions "
        f"each; {args.interrupted} interrupted compiles, {args.wiped} wiped working copies)\n"
    )
    print(
        f"seeded (register + clone) in {out['seed_s']:.0f} s; first start compiled "
        f"{out['cold_compiled']} workspaces in {out['cold_pass_s']:.0f} s\n"
    )
    print(
        "| code | round | /readyz | first IDE files | first git status | git status again "
        "| pass done | compiled by the pass | RSS MiB | load 1-min start / end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["rounds"]:
        print(
            f"| {r['label']} | {r['round']} | {r['ready_s']:.1f} s | {r['files_s']:.1f} s "
            f"| {r['git_s']:.1f} s | {r['git_again_ms']:.0f} ms | {r['pass_s']:.1f} s "
            f"| {r['compiled']:.0f} / {r['expected']} | {r['rss_mib']:.0f} "
            f"| {r['load_start']:.1f} / {r['load_end']:.1f} |"
        )


def start_pass_scan(args: argparse.Namespace) -> list[dict[str, float]]:
    """The start-up pass's per-workspace part at a size too big to seed for real
    (``--workspaces``' last step, e.g. 10,000): rows inserted straight, every compile
    finished, every working copy present as an empty ``.git`` folder; then what
    ``Factory.start_todo`` does — its two queries and one ``stat`` per workspace."""
    from sqlalchemy import insert

    from quarry.core.clock import utcnow
    from quarry.factory import workspaces as fw
    from quarry.factory.compiler import COMPILER_VERSION
    from quarry.store import factory_tables as ft
    from quarry.store.tables import workspaces as ws_table

    count = int(args.workspaces.split(",")[-1])
    root = Path(tempfile.mkdtemp(prefix="quarry-capacity-pass-"))
    factory = FactoryProcess(root, suffix="_pass")
    from quarry.store.db import create_state_engine

    engine = create_state_engine(factory.dsn)
    rows: list[dict[str, float]] = []
    try:
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(
                insert(ws_table),
                [
                    {
                        "id": f"w{i:08d}",
                        "tenant_id": "local",
                        "name": f"ws{i:05d}",
                        "source_kind": "git",
                        "source": "https://example.invalid/x.git",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(count)
                ],
            )
            for i in range(count):
                ft.mark_finished(
                    conn, f"w{i:08d}", "main", revision_id=None, promoted=False, draft=False,
                    git_commit=None,
                )  # fmt: skip
        for i in range(count):
            (factory.workspaces_dir / "local" / f"ws{i:05d}" / ".git").mkdir(parents=True)
        for _ in range(args.rounds):
            load = os.getloadavg()[0]
            started = time.perf_counter()
            with engine.connect() as conn:
                resume = ft.workspaces_to_resume(conn, COMPILER_VERSION)
                every = ft.git_workspaces(conn)
            queried = time.perf_counter()
            missing = [n for t, n in every if not fw.has_working_copy(factory.workspaces_dir, t, n)]
            done = time.perf_counter()
            assert not resume and not missing and len(every) == count
            rows.append(
                {"queries_ms": (queried - started) * 1000, "stats_ms": (done - queried) * 1000}
            )
            rows[-1]["load"] = load
            print(f"  {rows[-1]}", file=sys.stderr)
    finally:
        engine.dispose()
        factory.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## The start-up pass's own cost with {count} workspaces (nothing to do)\n")
    print("| round | queries | one stat per workspace | load 1-min |\n|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['queries_ms']:.0f} ms | {r['stats_ms']:.0f} ms | {r['load']:.1f} |")
    return rows


# -- schedules per driver tick (--scenario schedules) --------------------------------
def schedule_scan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One ``quarry driver`` on its own database per step, with N schedules firing every
    second (``bench/schedule_bench.py``'s workspace and accounting, one node instead of
    three, no APScheduler): per step the fires expected in a ``--duration`` window,
    fired, duplicates, misses and the delay (run created - due time) p50/p99. The knee
    is the largest N fired with no miss and a p99 under one tick."""
    from datetime import UTC, datetime, timedelta

    sys.path.insert(0, str(BENCH_DIR))
    import schedule_bench as sb

    rows: list[dict[str, Any]] = []
    for count in (int(x) for x in args.schedules.split(",")):
        with sb.scratch_database() as dsn, tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            svc, ws = sb.quarry_setup(dsn, count, root)
            (root / "driver").mkdir()
            env = {
                "QUARRY_DATABASE_URL": sb.sa_url(dsn),
                "QUARRY_BLOB_URL": (root / "blobs").as_uri(),
                "QUARRY_DATA_DIR": str(root / "driver"),
                "QUARRY_SCHEDULE_TICK_SECONDS": "1",
                "QUARRY_LOG_LEVEL": "WARNING",
                "QUARRY_QUEUE_MAX_QUEUED_PER_TENANT": "0",  # nothing drains the runs
            }
            log = root / "driver.log"
            proc = sb.spawn([sys.executable, "-m", "quarry", "driver"], env, log)
            try:

                def ready(proc: subprocess.Popen[bytes] = proc, log: Path = log) -> bool:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the driver exited:\n{log.read_text()}")
                    return " ready (tick " in log.read_text(errors="replace")

                sb.wait_for(ready, 180, "the driver to start")
                sb.quarry_compile(svc, ws, count)
                start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
                end = start + timedelta(seconds=int(args.duration))
                load = os.getloadavg()[0]
                sb.wait_for(
                    lambda end=end: datetime.now(UTC) > end + timedelta(seconds=5),
                    args.duration + 120,
                    "the window to pass",
                )
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            got = sb.quarry_results(svc, count, start, end)
            svc.close()
        got.update(schedules=count, load=load, load_end=os.getloadavg()[0])
        rows.append(got)
        print(f"  {got}", file=sys.stderr)
    print(f"\n## Schedules on one driver (every second, tick 1 s, {args.duration:g} s window)\n")
    print(
        "| schedules | fires expected | fired | duplicates | not fired by window + 5 s "
        "| delay p50 ms | delay p99 ms | load start / end |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['schedules']} | {r['expected']} | {r['fired']} | {r['duplicates']} "
            f"| {r['misses']} | {_ms(r['p50'])} | {_ms(r['p99'])} "
            f"| {r['load']:.1f} / {r['load_end']:.1f} |"
        )
    return rows


# -- agent turns in one process (--scenario agents) ---------------------------------
async def agent_turns(args: argparse.Namespace) -> list[dict[str, float]]:
    """Concurrent one-tool agent turns on one event loop (what one worker process runs
    with ``agent_turn_slots``), each turn two calls to the scripted model server with
    a fixed delay: achieved turns/s and p50/p99 turn time per concurrency step."""
    sys.path.insert(0, str(BENCH_DIR))
    sys.path.insert(0, str(BENCH_DIR.parent))
    from tests.support.model_server import ModelServer

    import agent_bench as ab

    rows: list[dict[str, float]] = []
    delay = args.model_ms / 1000
    with tempfile.TemporaryDirectory() as tmp, ModelServer() as server:
        os.environ[ab.KEY] = "sk-bench"
        svc, source, cache = ab.workspace(Path(tmp), server)
        try:
            for step, n in enumerate(int(x) for x in args.turns.split(",")):
                tag = f"s{step}t"
                ab.script_one_tool_turns(server, n, delay, tag)
                started = time.perf_counter()
                walls = await asyncio.gather(
                    *(ab.quarry_turn(source, cache, f"{tag} {k}?") for k in range(n))
                )
                wall = time.perf_counter() - started
                times = [w for w, _model in walls]
                rows.append(
                    {
                        "turns": n,
                        "wall": wall,
                        "per_s": n / wall,
                        "p50": statistics.median(times),
                        "p99": _pct(times, 0.99),
                        "floor": 2 * delay,
                        "rss_mib": _rss_kib(os.getpid()) / 1024,
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr)
        finally:
            svc.close()
    return rows


def report_agents(rows: list[dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"\n## Agent turns at once in one process (model {args.model_ms:g} ms per call, "
        "2 calls + 1 DuckDB query per turn; floor = 2 model calls)\n"
    )
    print("| turns at once | wall s | turns/s | turn p50 | turn p99 | p50 / floor | RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['turns']:.0f} | {r['wall']:.2f} | {r['per_s']:.1f} | {_ms(r['p50'])} | "
            f"{_ms(r['p99'])} | {r['p50'] / r['floor']:.2f} | {r['rss_mib']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: short, few steps")
    parser.add_argument("--serve", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rates", default="25,50,100,200,400,800")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlogs", default="200,1000")
    parser.add_argument("--followers", default="50,200")
    parser.add_argument(
        "--scenario",
        choices=["fleet", "workspaces", "restart", "start-pass", "schedules", "agents"],
        default="fleet",
        help="fleet: the process fleet's rates (default); workspaces: workspaces on one "
        "Factory; restart: a Factory restart with the last --workspaces step; agents: agent "
        "turns at once in one process",
    )
    parser.add_argument("--workspaces", default="100,300,1000", help="workspace steps")
    parser.add_argument("--defs", type=int, default=10, help="definitions per workspace")
    parser.add_argument("--concurrency", type=int, default=4, help="requests at a time")
    parser.add_argument("--interrupted", type=int, default=20, help="restart: pending compiles")
    parser.add_argument("--wiped", type=int, default=5, help="restart: deleted working copies")
    parser.add_argument(
        "--compare-src",
        help="restart: also restart Quarry from these sources (e.g. an older commit's "
        "git archive of src/) each round, for a before/after",
    )
    parser.add_argument("--restart-timeout", type=float, default=3600)
    parser.add_argument("--schedules", default="50,200,500", help="schedules: steps")
    parser.add_argument("--turns", default="50,100,200,400", help="agent turns at once")
    parser.add_argument("--model-ms", type=float, default=500, help="model delay per call")
    args = parser.parse_args()
    if args.hello_server:
        hello_server(args.hello_server)
        return
    if args.scenario == "workspaces":
        if args.quick:
            args.workspaces = "20,50"
        report_workspaces(asyncio.run(workspaces_scan(args)), args)
        return
    if args.scenario == "restart":
        if args.quick:
            args.workspaces, args.interrupted, args.wiped, args.rounds = "30", 3, 2, 1
        report_restart(restart_scan(args), args)
        return
    if args.scenario == "schedules":
        if args.quick:
            args.schedules, args.duration = "20", 5
        schedule_scan(args)
        return
    if args.scenario == "start-pass":
        if args.quick:
            args.workspaces, args.rounds = "500", 1
        start_pass_scan(args)
        return
    if args.scenario == "agents":
        if args.quick:
            args.turns = "10,20"
        report_agents(asyncio.run(agent_turns(args)), args)
        return
    if args.quick:
        args.rates, args.duration, args.rounds = "20,80", 2.0, 1
        args.backlogs = "50"
        if args.followers == parser.get_default("followers"):
            args.followers = "20"
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
