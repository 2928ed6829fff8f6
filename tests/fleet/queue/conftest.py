from __future__ import annotations

import json
import os
import queue as stdqueue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[3]


@dataclass
class WorkerProcess:
    owner: str
    process: subprocess.Popen[str]
    stderr_path: Path
    stderr_file: IO[str]
    lines: stdqueue.Queue[str] = field(default_factory=stdqueue.Queue)
    stats: dict[str, Any] | None = None
    pump: threading.Thread | None = None

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float) -> str:
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if line.startswith(prefix):
                    return line
        except stdqueue.Empty:
            raise TimeoutError(
                f"{self.owner}: no {prefix!r} line in {timeout}s; stderr:\n{self.stderr()}"
            ) from None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, wait for the graceful exit, return the worker's stats."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        line = self.wait_line("STOPPED", timeout)
        assert self.process.wait(timeout) == 0, self.stderr()
        self.close()
        self.stats = json.loads(line.split(" ", 2)[2])
        return self.stats

    def close(self) -> None:
        if self.pump is not None:
            self.pump.join(10)  # reaches EOF once the process has exited
        self.stderr_file.close()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Fleet:
    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []

    def start(self, owner: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        stderr_path = self.tmp_path / f"{owner}.stderr"
        stderr_file = stderr_path.open("w")
        child_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "QUARRY_DATABASE_URL": self.database_url,
            **(env or {}),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "quarry.runtime.queue.main", "--owner", owner, *args],
            cwd=REPO,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
        )
        worker = WorkerProcess(
            owner=owner, process=process, stderr_path=stderr_path, stderr_file=stderr_file
        )
        worker.pump = threading.Thread(target=worker._pump, daemon=True)
        worker.pump.start()
        self.workers.append(worker)
        return worker

    def kill_all(self) -> None:
        for w in self.workers:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGCONT)
                w.process.kill()
                w.process.wait(10)
            w.close()


@pytest.fixture
def fleet(pg_database: str, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(pg_database, tmp_path)
    try:
        yield f
    finally:
        f.kill_all()
