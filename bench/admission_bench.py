"""Admission benchmark: goodput and latency of admitted run creations under 10x
overload, with admission control on and off, in the same run.

* Two ``quarry serve`` processes (role all, Postgres state, in-process workers off,
  open auth, no queued-task cap), identical except ``QUARRY_ADMISSION=on|off``; the
  expensive ceiling is ``--ceiling`` (default 4, tenant share 1.0).
* The request: ``POST /api/v1/workspaces/bench/runs`` (resolve the revision, check the
  definition, insert the run and its task in one transaction): an *expensive* request.
* Load: closed-loop clients on keep-alive connections (a minimal HTTP/1.1 client on
  asyncio, so the client costs little CPU). A refused client (503) waits
  ``--backoff`` seconds and tries again, as a client honouring back-pressure would.
  Phases per server: *unloaded* (1 client), *saturated* (``ceiling`` clients) and
  *overload* (``10 x ceiling`` clients), ``--duration`` seconds each, repeated for
  ``--rounds`` rounds with the servers and phases interleaved, so a drift of the
  machine (or of the growing tables) spreads over every phase instead of landing on
  the last one; each phase's figures pool its rounds.
* Figures: goodput = accepted (202) per second; latency percentiles of accepted
  requests only; ratios against the same server's unloaded p99 and saturated goodput.
  Goal (issue 7), with admission on: overload p99 <= 2x unloaded p99, and overload
  goodput >= saturated goodput (it does not fall).

    .venv/bin/python bench/admission_bench.py [--duration 10] [--rounds 3] [--ceiling 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG = os.environ.get("QUARRY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PATH = "/api/v1/workspaces/bench/runs"
BODY = b'{"name": "workflows/monthly_revenue"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Phase:
    ok: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    other: int = 0
    seconds: float = 0.0
    rounds: list[tuple[float, float]] = field(default_factory=list)  # (goodput, p99 ms)

    def absorb(self, other: Phase) -> None:
        self.rounds.append((other.goodput, other.pct(0.99)))
        self.ok += other.ok
        self.refused += other.refused
        self.other += other.other
        self.seconds += other.seconds

    @property
    def goodput(self) -> float:
        return len(self.ok) / self.seconds if self.seconds else 0.0

    def pct(self, q: float, refused: bool = False) -> float:
        values = sorted(self.refused if refused else self.ok)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000


def request_bytes(port: int) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def client(port: int, until: float, backoff: float, phase: Phase) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = request_bytes(port)
    try:
        while time.monotonic() < until:
            started = time.monotonic()
            writer.write(raw)
            status_line = await reader.readline()
            length = 0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            await reader.readexactly(length)
            took = time.monotonic() - started
            status = int(status_line.split()[1])
            if status == 202:
                phase.ok.append(took)
            elif status == 503:
                phase.refused.append(took)
                await asyncio.sleep(backoff)
            else:
                phase.other += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def load(port: int, clients: int, duration: float, backoff: float) -> Phase:
    phase = Phase()
    started = time.monotonic()
    until = started + duration
    await asyncio.gather(*(client(port, until, backoff, phase) for _ in range(clients)))
    phase.seconds = time.monotonic() - started
    return phase


def start_server(
    name: str, admission: str, ceiling: int, root: Path, tmp: Path
) -> tuple[subprocess.Popen[bytes], int, str]:
    db = f"quarry_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{db}"
    port = free_port()
    env = {
        **os.environ,
        "QUARRY_DATABASE_URL": url,
        "QUARRY_BLOB_URL": (tmp / name / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp / name),
        "QUARRY_AUTH": "open",
        "QUARRY_INPROCESS_WORKERS": "off",
        "QUARRY_GLOBAL_DRIVER": "off",
        "QUARRY_ADMISSION": admission,
        "QUARRY_ADMISSION_EXPENSIVE_MAX": str(ceiling),
        "QUARRY_ADMISSION_TENANT_SHARE": "1.0",
        "QUARRY_QUEUE_MAX_QUEUED_PER_TENANT": "0",
        "QUARRY_LOG_LEVEL": "WARNING",
    }
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quarry",
            "serve",
            str(root),
            "--name",
            "bench",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, port, db
        except OSError:
            if proc.poll() is not None:
                message = (tmp / f"{name}.log").read_text()
                raise SystemExit(f"{name} server exited: {message}") from None
            time.sleep(0.2)
    raise SystemExit(f"{name} server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ceiling", type=int, default=2)
    parser.add_argument("--backoff", type=float, default=1.0, help="= Retry-After")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        help="first measure 1..N clients on the admission-off server (sizing the ceiling)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from quarry.demo import create_demo_workspace

    tmp = Path(tempfile.mkdtemp(prefix="quarry-admission-"))
    root = create_demo_workspace(tmp / "ws")
    servers = {}
    try:
        for name in ("on", "off"):
            servers[name] = start_server(name, name, args.ceiling, root, tmp)
        plan = [("unloaded", 1), ("saturated", args.ceiling), ("overload", 10 * args.ceiling)]
        results = {(name, phase): Phase() for name in servers for phase, _ in plan}
        for name in servers:  # warm both servers once, at the largest load
            asyncio.run(load(servers[name][1], 10 * args.ceiling, 2.0, args.backoff))
        if args.sweep:
            sweep(servers["off"][1], args)
        for round_no in range(args.rounds):
            for phase_name, clients in plan:
                order = ("on", "off") if round_no % 2 == 0 else ("off", "on")
                for name in order:
                    measured = asyncio.run(
                        load(servers[name][1], clients, args.duration, args.backoff)
                    )
                    results[(name, phase_name)].absorb(measured)
        report(results, args)
    finally:
        for proc, _port, db in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def sweep(port: int, args: argparse.Namespace) -> None:
    """Goodput and latency by concurrency without admission: where the ceiling belongs
    (the smallest concurrency past which goodput stops growing)."""
    print(f"\nsizing sweep (admission off, {args.duration:.0f}s per step)")
    print(f"{'clients':>8}{'goodput/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99/1':>8}")
    first = None
    for clients in range(1, args.sweep + 1):
        p = asyncio.run(load(port, clients, args.duration, args.backoff))
        first = first or p.pct(0.99)
        print(
            f"{clients:>8}{p.goodput:>11.1f}{p.pct(0.5):>9.1f}{p.pct(0.99):>9.1f}"
            f"{p.pct(0.99) / first:>8.2f}"
        )


def report(results: dict[tuple[str, str], Phase], args: argparse.Namespace) -> None:
    print(
        f"\nadmission benchmark: POST {PATH}, ceiling {args.ceiling}, {args.rounds} rounds of "
        f"{args.duration:.0f}s per phase, refused clients back off {args.backoff * 1000:.0f} ms\n"
    )
    head = (
        f"{'admission':<10}{'phase':<11}{'clients':>8}{'goodput/s':>11}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'refused':>9}{'ref p99':>9}{'p99/unl':>9}{'good/sat':>9}"
    )
    print(head)
    print("-" * len(head))
    clients = {"unloaded": 1, "saturated": args.ceiling, "overload": 10 * args.ceiling}
    for name in ("on", "off"):
        base = results[(name, "unloaded")]
        sat = results[(name, "saturated")]
        for phase_name in ("unloaded", "saturated", "overload"):
            p = results[(name, phase_name)]
            print(
                f"{name:<10}{phase_name:<11}{clients[phase_name]:>8}{p.goodput:>11.1f}"
                f"{p.pct(0.5):>9.1f}{p.pct(0.99):>9.1f}{len(p.refused):>9}"
                f"{p.pct(0.99, refused=True):>9.1f}"
                f"{p.pct(0.99) / base.pct(0.99):>9.2f}{p.goodput / sat.goodput:>9.2f}"
            )
    on, off = results[("on", "overload")], results[("off", "overload")]
    base_on = results[("on", "unloaded")]
    print(
        f"\noverload, on vs off: goodput {on.goodput / off.goodput:.2f}x, "
        f"admitted p99 {on.pct(0.99) / off.pct(0.99):.2f}x"
    )
    p99_ok = on.pct(0.99) <= 2 * base_on.pct(0.99)
    good_ok = on.goodput >= 0.95 * results[("on", "saturated")].goodput
    print(
        f"goal (on): overload p99 <= 2x unloaded p99: {'met' if p99_ok else 'NOT met'}; "
        f"goodput does not fall (>= 95% of saturated): {'met' if good_ok else 'NOT met'}"
    )
    print("\nper round (goodput/s, p99 ms):")
    for (name, phase_name), p in results.items():
        rounds = "  ".join(f"{g:7.1f} {q:6.1f}" for g, q in p.rounds)
        print(f"  {name:<4}{phase_name:<11}{rounds}")
    others = sum(p.other for p in results.values())
    if others:
        print(f"(non-202/503 answers: {others})")


if __name__ == "__main__":
    main()
