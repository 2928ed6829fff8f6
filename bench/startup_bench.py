"""Start-up cost (issue #20): how long a person waits for ``quarry run`` of a one-step
SQL workflow and for ``quarry serve`` to answer, beside the ceiling a Python tool on
DuckDB cannot beat (``python -c "import duckdb; duckdb.sql('select 42')"``).

Rows, each a fresh process per round, rounds interleaved (round 1 runs every row, then
round 2...) so that a burst of load on the machine hits all rows alike:

* ``floor``: ``python -c pass`` and ``python -c "import quarry"``, what the machine's
  load makes of an interpreter start in the same rounds;
* ``ceiling``: the interpreter plus DuckDB answering ``select 42``;
* ``quarry --help``: the entry point alone (parse the command line, print, exit);
* ``quarry run``: ``quarry run workflows/answer.workflow.yml`` in a scratch workspace
  (``config.yml`` with DuckDB ``local``, one ``execute_sql`` task ``SELECT 42``), state
  on SQLite under a scratch ``QUARRY_DATA_DIR``: compile (files unchanged after the
  warm-up), run, print the table;
* ``quarry serve``: spawn to the first ``200`` of ``GET /healthz`` over a real socket
  (polled every 5 ms), then SIGTERM; state already migrated;
* ``quarry serve DIR``: the same with the workspace folder (compiled at start, then
  watched), what ``quarry serve .`` does on a laptop.

One untimed warm-up of every row first (the state database is created and migrated
then, the OS file cache is warm). Columns: median and worst wall seconds, median CPU
seconds (user + system of the process and its children, e.g. the compile process;
for ``serve``, of the server process up to the moment it is ready, its threads
included, its children not), and the median as a
multiple of the ceiling's median. The load average is printed before and after: on
a shared machine compare the CPU column too.

    .venv/bin/python bench/startup_bench.py [--rounds 11] [--before DIR]

``--before DIR``: also time ``quarry run`` and ``quarry serve`` from another source tree
(``git archive COMMIT src | tar -x -C DIR``, then ``python -m compileall -q DIR/src``),
put first on ``PYTHONPATH``, with its own state directory: before/after in the same
rounds.

Goals (issue #20): ``quarry run`` <= 0.5 s, ``quarry serve`` ready <= 1 s. Bytecode
must be installed (``scripts/bootstrap`` runs ``uv sync --compile-bytecode`` and
compiles ``src``): these machines set ``PYTHONDONTWRITEBYTECODE=1``, so without it
every process compiles what it imports again.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
QUARRY = str(Path(sys.executable).parent / "quarry")
READY_TIMEOUT = 120.0


@dataclass
class Row:
    name: str
    measure: Callable[[], tuple[float, float | None]]
    goal: float | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` run to completion (it must succeed)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}"
        )
    return wall, _children_cpu() - cpu


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_to_ready(
    args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> tuple[float, float]:
    """Seconds from spawning ``quarry serve ...`` to its first healthy answer, and the
    CPU seconds the server process had used by then (its threads included)."""
    port = _free_port()
    with log.open("ab") as sink:
        start = time.perf_counter()
        process = subprocess.Popen(
            [QUARRY, "serve", *args, "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=sink,
            stderr=sink,
        )
        try:
            while not _healthy(port):
                if process.poll() is not None:
                    raise SystemExit(f"quarry serve exited ({process.returncode}); see {log}")
                if time.perf_counter() - start > READY_TIMEOUT:
                    raise SystemExit(f"quarry serve not ready in {READY_TIMEOUT} s; see {log}")
                time.sleep(0.005)  # a bench's poll: the thing measured is the other process
            ready = time.perf_counter() - start
            cpu = _process_cpu(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return ready, cpu


def _workspace(root: Path) -> Path:
    (root / "workflows").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "config.yml").write_text(
        "databases:\n  - name: local\n    type: duckdb\n    dataset: data/\n"
        "defaults:\n  database: local\n"
    )
    (root / "workflows" / "answer.workflow.yml").write_text(
        "tasks:\n  - name: answer\n    type: execute_sql\n    database: local\n"
        "    sql_query: SELECT 42 AS answer\n"
    )
    return root


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--before", type=Path, help="a source tree with src/quarry to compare")
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="quarry-startup-"))
    root = _workspace(scratch / "ws")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env["QUARRY_DATA_DIR"] = str(scratch / "state")
    env["QUARRY_AUTH"] = "auto"
    log = scratch / "serve.log"
    ceiling = "import duckdb; duckdb.sql('select 42').fetchall()"

    rows = [
        Row("floor: python -c pass", lambda: _timed([PYTHON, "-c", "pass"], env, root)),
        Row(
            "floor: python -c 'import quarry'",
            lambda: _timed([PYTHON, "-c", "import quarry"], env, root),
        ),
        Row(
            "ceiling: python + duckdb select 42",
            lambda: _timed([PYTHON, "-c", ceiling], env, root),
        ),
        Row("quarry --help", lambda: _timed([QUARRY, "--help"], env, root)),
        Row(
            "quarry run (one-step SQL workflow)",
            lambda: _timed([QUARRY, "run", "workflows/answer.workflow.yml"], env, root),
            goal=0.5,
        ),
        Row("quarry serve: ready", lambda: _time_to_ready([], env, root, log), goal=1.0),
        Row(
            "quarry serve DIR: ready",
            lambda: _time_to_ready([str(root)], env, root, log),
        ),
    ]
    if options.before is not None:
        other = _workspace(scratch / "before")
        before = {**env, "QUARRY_DATA_DIR": str(scratch / "before-state")}
        before["PYTHONPATH"] = str((options.before / "src").resolve())
        rows += [
            Row(
                "BEFORE quarry run",
                lambda: _timed([QUARRY, "run", "workflows/answer.workflow.yml"], before, other),
            ),
            Row(
                "BEFORE quarry serve: ready",
                lambda: _time_to_ready([], before, other, log),
            ),
        ]
    # As scripts/bootstrap does: with PYTHONDONTWRITEBYTECODE=1, a file of src edited
    # since (other sessions edit this checkout) is compiled again in every process.
    src = Path(__file__).resolve().parents[1] / "src"
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(src)], check=True, capture_output=True)
    print(f"load average before: {_load()}")
    for row in rows:  # warm-up: migrations, file cache
        row.measure()
    for _ in range(options.rounds):
        for row in rows:
            wall, cpu = row.measure()
            row.walls.append(wall)
            if cpu is not None:
                row.cpus.append(cpu)
    print(f"load average after:  {_load()}")
    base = statistics.median(rows[2].walls)  # the ceiling
    print(f"\n{options.rounds} rounds, fresh process each; seconds\n")
    header = f"{'':38} {'median':>7} {'worst':>7} {'CPU':>6} {'x ceiling':>9} {'goal':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        median = statistics.median(row.walls)
        cpu = f"{statistics.median(row.cpus):6.2f}" if row.cpus else f"{'-':>6}"
        goal = f"{row.goal:6.2f}" if row.goal is not None else ""
        print(
            f"{row.name:38} {median:7.2f} {max(row.walls):7.2f} {cpu} "
            f"{median / base:8.1f}x {goal:>6}"
        )


if __name__ == "__main__":
    main()
