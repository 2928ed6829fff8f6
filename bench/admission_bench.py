"""Admission benchmark: goodput and latency of admitted run creations under 10x
overload, with admission control on and off, in the same run.

* Two ``quarry serve`` processes (role all, Postgres state, in-process workers off,
  open auth, no queued-task cap), identical except ``QUARRY_ADMISSION=on|off``; the
  expensive ceiling is ``--ceiling`` (default 2, tenant share 1.0).
* The request: ``POST /api/v1/workspaces/bench/runs`` (resolve the revision, check the
  definition, insert the run and its task in one transaction): an *expensive* request.
* Load: closed-loop clients on keep-alive connections (a minimal HTTP/1.1 client on
  asyncio, so the client costs little CPU). A refused client (503) waits
  ``--backoff`` seconds and tries again, as a client honouring back-pressure would.
  Phases per server: *unloaded* (1 client), *saturated* (``ceiling`` clients) and
  *overload* (``10 x ceiling`` clients), ``--duration`` seconds each in all, run as
  ``--slice``-second slices that cycle through every phase of both servers (the
  servers' order alternating): a disturbance of the shared machine (or the growing
  tables) lands on every phase alike instead of on whichever phase ran then.
* Figures: goodput = accepted (202) answers completed inside the slices' windows per
  second of window (a client backing off stops at the window's end, so no phase is
  charged for idle tail time); latency percentiles of accepted
  requests only; ratios against the same server's unloaded p99 and saturated goodput.
  Goal (issue 7), with admission on: overload p99 <= 2x unloaded p99, and overload
  goodput >= saturated goodput (it does not fall).

    .venv/bin/python bench/admission_bench.py [--duration 30] [--slice 2.5] [--ceiling 2] \
        [--sweep 6]
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
BLOCKS = 5  # the slices are also pooled in this many consecutive blocks (the spread)
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
    parts: list[Phase] = field(default_factory=list)  # consecutive blocks, for the spread

    def absorb(self, other: Phase, block: int) -> None:
        while len(self.parts) <= block:
            self.parts.append(Phase())
        self.parts[block].add(other)
        self.add(other)

    def add(self, other: Phase) -> None:
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
            finished = time.monotonic()
            took = finished - started
            status = int(status_line.split()[1])
            if finished > until:
                pass  # past the window: counted in no phase
            elif status == 202:
                phase.ok.append(took)
            elif status == 503:
                phase.refused.append(took)
                await asyncio.sleep(min(backoff, until - finished))
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
    phase.seconds = duration
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
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--slice", type=float, default=2.5, help="seconds per slice")
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
        cycles = max(1, round(args.duration / args.slice))
        for cycle in range(cycles):
            block = cycle * min(BLOCKS, cycles) // cycles
            for phase_name, clients in plan:
                order = ("on", "off") if cycle % 2 == 0 else ("off", "on")
                for name in order:
                    measured = asyncio.run(
                        load(servers[name][1], clients, args.slice, args.backoff)
                    )
                    results[(name, phase_name)].absorb(measured, block)
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
        f"\nadmission benchmark: POST {PATH}, ceiling {args.ceiling}, {args.duration:.0f}s per "
        f"phase in {args.slice:g}s slices, refused clients back off {args.backoff * 1000:.0f} ms\n"
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
    print("\nby block of consecutive slices (goodput/s, p99 ms):")
    for (name, phase_name), p in results.items():
        blocks = "  ".join(f"{b.goodput:7.1f} {b.pct(0.99):6.1f}" for b in p.parts)
        print(f"  {name:<4}{phase_name:<11}{blocks}")
    others = sum(p.other for p in results.values())
    if others:
        print(f"(non-202/503 answers: {others})")


if __name__ == "__main__":
    main()
