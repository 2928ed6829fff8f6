"""Real server processes and real sockets for tests, with deadline-based waits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support.services import free_port


def wait_until(
    predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_quarry(
    args: list[str], env: dict[str, str], log_path: Path, *, port: int | None = None
) -> ServerProcess:
    """Start ``quarry <args> --port P`` as a real process; does not wait for it."""
    port = port or free_port()
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "quarry", *args, "--port", str(port)],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


def wait_healthy(server: ServerProcess, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        return _healthy(server.url)

    wait_until(ready, timeout, f"{server.url} to become healthy")


@contextmanager
def quarry_process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[ServerProcess]:
    server = start_quarry(args, env, log_path)
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a real loopback socket from a background thread."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.started, 30, "in-thread server start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
