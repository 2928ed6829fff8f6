"""Proxy overhead: an IdeOnly ``GET`` through a serve replica vs the same request sent
to the Factory directly, in the same run.

* **direct**: ``GET /api/v1/workspaces/shop/files/queries/monthly_revenue.sql`` on the
  Factory (``quarry serve WS --role ide``; the file API reads the working copy).
* **via replica**: the same request to a serve replica (``quarry serve --role serve``
  with ``QUARRY_IDE_UPSTREAM`` at the Factory), which classifies it IdeOnly and
  streams it through its pooled proxy client.

Both processes run on one scratch Postgres database and a local blob folder. The
client is one keep-alive ``http.client`` connection per target (the least client-side
overhead Python offers), requests alternate between the targets (which goes first
flips every iteration) so load on the shared machine hits both alike; a warm-up
precedes the timed requests. Both processes authenticate the bearer token
(``QUARRY_AUTH=tokens``): the replica before routing, the Factory again itself.
Goal (issue 5): via-replica p50 < 1.5x direct p50.

    .venv/bin/python bench/proxy_bench.py [--requests 2000] [--warmup 200]
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


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quarry", *args],
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
    parser.add_argument("--requests", type=int, default=2000)
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
        "QUARRY_AUTH": "tokens",  # both processes authenticate, as in a real fleet
    }
    root = create_demo_workspace(tmp / "shop")
    factory_port, replica_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        factory_log = tmp / "factory.log"
        factory = start(
            ["serve", str(root), "--role", "ide", "--name", "shop", "--port", str(factory_port)],
            {**env, "QUARRY_DATA_DIR": str(tmp / "factory"), "QUARRY_INPROCESS_WORKERS": "off"},
            factory_log,
        )
        processes.append(factory)
        wait_ready(factory_port, factory, factory_log, "/healthz")
        HEADERS["Authorization"] = f"Bearer {issue_token(env['QUARRY_DATABASE_URL'])}"
        wait_ready(factory_port, factory, factory_log, PATH)
        replica_log = tmp / "replica.log"
        replica = start(
            ["serve", "--role", "serve", "--port", str(replica_port)],
            {
                **env,
                "QUARRY_DATA_DIR": str(tmp / "replica"),
                "QUARRY_IDE_UPSTREAM": f"http://127.0.0.1:{factory_port}",
            },
            replica_log,
        )
        processes.append(replica)
        wait_ready(replica_port, replica, replica_log, PATH)

        direct = http.client.HTTPConnection("127.0.0.1", factory_port, timeout=30)
        proxied = http.client.HTTPConnection("127.0.0.1", replica_port, timeout=30)
        targets = {"direct": direct, "via replica": proxied}
        samples: dict[str, list[float]] = {name: [] for name in targets}
        bodies = set()
        cpu_before = {"factory": cpu_seconds(factory), "replica": cpu_seconds(replica)}
        for i in range(args.warmup + args.requests):
            order = list(targets.items()) if i % 2 == 0 else list(reversed(targets.items()))
            for name, conn in order:
                elapsed, body = timed_get(conn)
                bodies.add(body)
                if i >= args.warmup:
                    samples[name].append(elapsed)
        assert len(bodies) == 1, "the proxy must return the Factory's bytes"
        cpu_after = {"factory": cpu_seconds(factory), "replica": cpu_seconds(replica)}

        print(f"IdeOnly GET {PATH}, {args.requests} requests each, 1 connection, interleaved")
        print(f"{'target':<14}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        stats = {}
        for name, values in samples.items():
            p50, p90, p99 = (percentile(values, q) for q in (0.5, 0.9, 0.99))
            stats[name] = (p50, p99)
            print(
                f"{name:<14}{p50 * 1e3:>10.3f}{p90 * 1e3:>10.3f}{p99 * 1e3:>10.3f}"
                f"{statistics.fmean(values) * 1e3:>10.3f}"
            )
        p50_ratio = stats["via replica"][0] / stats["direct"][0]
        p99_ratio = stats["via replica"][1] / stats["direct"][1]
        verdict = "met" if p50_ratio < 1.5 else "NOT met"
        print(
            f"ratio via/direct: p50 {p50_ratio:.2f}x, p99 {p99_ratio:.2f}x "
            f"(goal p50 < 1.5x: {verdict})"
        )
        total = args.warmup + args.requests
        before, after = cpu_before, cpu_after
        if before["factory"] is not None and after["factory"] is not None:
            # The Factory answers both targets' requests, the replica one of them.
            factory_cpu = (after["factory"] - before["factory"]) / (2 * total)
            replica_cpu = (after["replica"] or 0.0) - (before["replica"] or 0.0)
            print(
                f"CPU per request: Factory {factory_cpu * 1e3:.3f} ms, "
                f"replica (proxying) {replica_cpu / total * 1e3:.3f} ms"
            )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
