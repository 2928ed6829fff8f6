"""Proxy overhead and the proxy's upstream client: an IdeOnly ``GET`` sent to the
Factory directly and through two serve replicas that differ only in the client they
forward with, all in the same run.

* **direct**: ``GET /api/v1/workspaces/shop/files/queries/monthly_revenue.sql`` on the
  Factory (``quarry serve WS --role ide``; the file API reads the working copy).
* **llhttp**: the same request to a serve replica (``quarry serve --role serve`` with
  ``QUARRY_IDE_UPSTREAM`` at the Factory) whose proxy uses the hand-written client
  (``quarry.fleet.upstream_client``: asyncio protocol + httptools).
* **httpx**: the same request to a second replica whose proxy uses
  ``HttpxPool`` from ``bench/proxy_httpx_client.py`` (one shared ``httpx.AsyncClient``, a
  keep-alive pool, HTTP/1.1, no cookie jar, no default headers, ``trust_env=False``).
  The replica is started with the class swapped in before the CLI runs; nothing
  else differs.

All processes run on one scratch Postgres database and a local blob folder, all with
``QUARRY_AUTH=tokens``. The load generator is one keep-alive ``http.client``
connection per target (the least client-side overhead Python offers). Requests go
round-robin over the three targets, the order rotating every iteration, so load on a
shared machine hits all alike; a warm-up precedes the timed rounds. Each round
reports p50 and p99 per target; the table gives the median over rounds, the worst
round, and the ratios, plus each replica's CPU per request from ``/proc`` (the
client's own cost, least disturbed by other load).

    .venv/bin/python bench/proxy_bench.py [--rounds 5] [--requests 400] [--warmup 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("QUARRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PATH = "/api/v1/workspaces/shop/files/queries/monthly_revenue.sql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The httpx replica: the proxy module's client class is swapped before the CLI runs.
HTTPX_REPLICA = (
    f"import runpy, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
    "import quarry.fleet.proxy as proxy, proxy_httpx_client as h; "
    "proxy.UpstreamPool = h.HttpxPool; runpy.run_module('quarry', run_name='__main__')"
)


def start(
    args: list[str], env: dict[str, str], log: Path, code: str | None = None
) -> subprocess.Popen[bytes]:
    entry = ["-c", code] if code else ["-m", "quarry"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *entry, *args],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


HEADERS: dict[str, str] = {}


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, path: str) -> None:
    deadline = time.monotonic() + 120
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path, headers=HEADERS)
            response = conn.getresponse()
            if response.status == 200:
                return
            last = f"HTTP {response.status}: {response.read()[:300]!r}"
        except OSError as exc:
            last = repr(exc)
            pass
        time.sleep(0.2)
    sys.exit(f"server on {port} not ready ({last}):\n{log.read_text()[-3000:]}")


def timed_get(conn: http.client.HTTPConnection) -> tuple[float, bytes]:
    started = time.perf_counter()
    conn.request("GET", PATH, headers=HEADERS)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
    return elapsed, body


def issue_token(database_url: str) -> str:
    from quarry.store import tokens as tokq
    from quarry.store.db import create_state_engine
    from quarry.store.workspaces import ensure_tenant

    engine = create_state_engine(database_url)
    with engine.begin() as conn:
        ensure_tenant(conn, "local")
        _row, secret = tokq.create_token(conn, "local", "admin", "proxy bench")
    engine.dispose()
    return secret


def cpu_seconds(process: subprocess.Popen[bytes]) -> float | None:
    """User + system CPU of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400, help="per target and round")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from quarry.demo import create_demo_workspace

    db = f"quarry_bench_proxy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="quarry-proxy-bench-"))
    database_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    env = {
        "QUARRY_DATABASE_URL": f"{database_url}/{db}",
        "QUARRY_BLOB_URL": (tmp / "blobs").as_uri(),
        "QUARRY_AUTH": "tokens",  # every process authenticates, as in a real fleet
    }
    root = create_demo_workspace(tmp / "shop")
    factory_port = free_port()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        factory_log = tmp / "factory.log"
        factory = start(
            ["serve", str(root), "--role", "ide", "--name", "shop", "--port", str(factory_port)],
            {**env, "QUARRY_DATA_DIR": str(tmp / "factory"), "QUARRY_INPROCESS_WORKERS": "off"},
            factory_log,
        )
        processes["factory"] = factory
        wait_ready(factory_port, factory, factory_log, "/healthz")
        HEADERS["Authorization"] = f"Bearer {issue_token(env['QUARRY_DATABASE_URL'])}"
        wait_ready(factory_port, factory, factory_log, PATH)
        ports = {"direct": factory_port}
        for name, code in (("llhttp", None), ("httpx", HTTPX_REPLICA)):
            port = free_port()
            replica_log = tmp / f"replica-{name}.log"
            replica = start(
                ["serve", "--role", "serve", "--port", str(port)],
                {
                    **env,
                    "QUARRY_DATA_DIR": str(tmp / f"replica-{name}"),
                    "QUARRY_IDE_UPSTREAM": f"http://127.0.0.1:{factory_port}",
                },
                replica_log,
                code,
            )
            processes[name] = replica
            wait_ready(port, replica, replica_log, PATH)
            ports[name] = port

        targets = {
            name: http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for name, port in ports.items()
        }
        names = list(targets)
        bodies = set()
        rounds: list[dict[str, list[float]]] = []
        cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
        for r in range(args.rounds + 1):  # round 0 is the warm-up
            count = args.warmup if r == 0 else args.requests
            samples: dict[str, list[float]] = {name: [] for name in names}
            for i in range(count):
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    elapsed, body = timed_get(targets[name])
                    bodies.add(body)
                    samples[name].append(elapsed)
            if r == 0:
                cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
            else:
                rounds.append(samples)
        cpu_after = {name: cpu_seconds(p) for name, p in processes.items()}
        assert len(bodies) == 1, "every target must return the Factory's bytes"

        timed = args.rounds * args.requests
        print(
            f"IdeOnly GET {PATH}: {args.rounds} rounds x {args.requests} requests per target, "
            f"1 keep-alive connection each, round-robin; load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end"
        )
        p50 = {n: [percentile(s[n], 0.5) * 1e3 for s in rounds] for n in names}
        p99 = {n: [percentile(s[n], 0.99) * 1e3 for s in rounds] for n in names}
        header = f"{'target':<8}{'p50 med':>9}{'p50 worst':>11}{'p99 med':>9}{'p99 worst':>11}"
        print(header + f"{'CPU/req':>10}")
        for n in names:
            cpu = ""
            process = "factory" if n == "direct" else n
            before, after = cpu_before[process], cpu_after[process]
            if before is not None and after is not None:
                # The Factory answers every target's requests.
                per = (after - before) / (timed * (len(names) if n == "direct" else 1))
                cpu = f"{per * 1e3:.3f}"
            print(
                f"{n:<8}{statistics.median(p50[n]):>9.3f}{max(p50[n]):>11.3f}"
                f"{statistics.median(p99[n]):>9.3f}{max(p99[n]):>11.3f}{cpu:>10}"
            )
        print("(ms; CPU/req of 'direct' is the Factory's, of a replica its own)")
        for a, b in (("llhttp", "direct"), ("httpx", "direct"), ("httpx", "llhttp")):
            r50 = [x / y for x, y in zip(p50[a], p50[b], strict=True)]
            r99 = [x / y for x, y in zip(p99[a], p99[b], strict=True)]
            print(
                f"ratio {a}/{b}: p50 median {statistics.median(r50):.2f}x "
                f"(rounds {min(r50):.2f}-{max(r50):.2f}), p99 median "
                f"{statistics.median(r99):.2f}x (rounds {min(r99):.2f}-{max(r99):.2f})"
            )
        cpu_l = (cpu_after["llhttp"] or 0.0) - (cpu_before["llhttp"] or 0.0)
        cpu_h = (cpu_after["httpx"] or 0.0) - (cpu_before["httpx"] or 0.0)
        if cpu_l > 0:
            print(f"replica CPU httpx/llhttp: {cpu_h / cpu_l:.2f}x")
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
