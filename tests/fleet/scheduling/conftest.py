"""Real ``quarry driver`` processes against one Postgres, and a workspace compiled
by the test itself (the Factory's part), for the scheduling fleet tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quarry.core.settings import Settings
from quarry.node.services import Services, build_services
from tests.integration.scheduling.workspace import Workspace
from tests.support.processes import wait_until

REPO = Path(__file__).resolve().parents[3]


@dataclass
class DriverProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            return " ready (tick " in self.log()

        wait_until(ready, timeout, f"{self.name} to start its driver")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(15)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class DriverFleet:
    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.started: list[DriverProcess] = []

    def start(self, name: str, **extra_env: str) -> DriverProcess:
        data = self.tmp_path / f"{name}-data"
        data.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "QUARRY_DATA_DIR": str(data),
            **self.env,
            **extra_env,
        }
        log_path = self.tmp_path / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "quarry", "driver"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.tmp_path,
            )
        driver = DriverProcess(name, process, log_path)
        self.started.append(driver)
        return driver

    def stop_all(self) -> None:
        for driver in self.started:
            driver.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver([500, 500])
    yield hook
    hook.close()


@pytest.fixture
def fleet_env(pg_database: str, tmp_path: Path, receiver: Receiver) -> dict[str, str]:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    return {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": blobs.as_uri(),
        "QUARRY_SCHEDULE_TICK_SECONDS": "0.25",
        "QUARRY_SCHEDULE_CATCHUP_SECONDS": "3",
        "QUARRY_LOG_LEVEL": "WARNING",
        "TEST_ALERT_HOOK": receiver.url,
        "QUARRY_ALERT_DELIVERY_ATTEMPTS": "4",
        # Nothing drains the runs here: the per-tenant cap on queued tasks would refuse
        # them after ~50 s (refused fires are retried, i.e. late; not what is measured).
        "QUARRY_QUEUE_MAX_QUEUED_PER_TENANT": "0",
    }


@pytest.fixture
def drivers(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[DriverFleet]:
    fleet = DriverFleet(fleet_env, tmp_path)
    yield fleet
    fleet.stop_all()


@pytest.fixture
def factory(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    """The test's own connection, used as the Factory: it compiles and promotes."""
    settings = Settings(
        database_url=fleet_env["QUARRY_DATABASE_URL"],
        blob_url=fleet_env["QUARRY_BLOB_URL"],
        data_dir=tmp_path / "factory-data",
        global_driver="off",
    )
    svc = build_services(settings)
    yield svc
    svc.close()


@pytest.fixture
def workspace(factory: Services, tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", factory)


class Receiver:
    """A real webhook receiver on a loopback socket: answers the statuses it is told
    to (500 first, say), then 200, and records every request."""

    def __init__(self, statuses: list[int]) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses = list(statuses)
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
