"""``quarry fleet up`` as a real process: it starts a Factory, replicas and workers
behind a front door, and an interrupt (SIGINT, SIGTERM) or its own death leaves no
child behind."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from quarry.demo import create_demo_workspace
from tests.support.processes import wait_until
from tests.support.services import free_port

pytestmark = pytest.mark.slow

CHILD = re.compile(r"^\s+(factory|serve-\d+|worker-\d+)\s+(\S+)\s+pid (\d+)")


@dataclass
class FleetUp:
    process: subprocess.Popen[str]
    front: str
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    children: dict[str, tuple[str, int]] = field(default_factory=dict)

    def pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float) -> str:
        def found() -> bool:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return any(text in line for line in self.seen)

        wait_until(found, timeout, f"{text!r} in the output: {self.seen}")
        return next(line for line in self.seen if text in line)


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for an init that does not reap counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


@pytest.fixture
def fleet_up(pg_database: str, tmp_path: Path) -> Iterator[FleetUp]:
    root = create_demo_workspace(tmp_path / "shop")
    port = free_port()
    env = {
        **os.environ,
        "QUARRY_DATABASE_URL": pg_database,
        "PYTHONUNBUFFERED": "1",
        "QUARRY_AUTH": "tokens",
    }
    env.pop("QUARRY_BLOB_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quarry",
            "fleet",
            "up",
            "--serve",
            "2",
            "--workers",
            "1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "fleet"),
            "--workspace",
            str(root),
            "--name",
            "shop",
            "--grace",
            "20",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = FleetUp(process, f"http://127.0.0.1:{port}")
    pump = threading.Thread(target=up.pump, daemon=True)
    pump.start()
    try:
        up.wait_line("Ctrl-C (or SIGTERM) stops the whole fleet", 180)
        for line in up.seen:
            if match := CHILD.match(line):
                up.children[match[1]] = (match[2], int(match[3]))
        yield up
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        for _name, (_url, pid) in up.children.items():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        pump.join(10)  # EOF once the launcher has exited
        assert process.stdout is not None
        process.stdout.close()


def test_fleet_up_serves_and_sigint_leaves_no_children(
    fleet_up: FleetUp, auth_headers: dict[str, str]
) -> None:
    up = fleet_up
    assert set(up.children) == {"factory", "serve-1", "serve-2", "worker-1"}
    pids = [pid for _url, pid in up.children.values()]
    assert all(not _gone(pid) for pid in pids)
    # Reads and an IdeOnly compile, both through the front door and a replica.
    for _ in range(4):
        listing = httpx.get(
            f"{up.front}/api/v1/workspaces/shop/definitions", headers=auth_headers, timeout=15
        )
        assert listing.status_code == 200 and listing.json()["definitions"]
    compiled = httpx.post(
        f"{up.front}/api/v1/workspaces/shop/compile", headers=auth_headers, timeout=120
    )
    assert compiled.status_code == 200, compiled.text
    for name in ("serve-1", "serve-2"):
        url = up.children[name][0]
        assert httpx.get(f"{url}/healthz", timeout=10).json()["factory_imported"] is False

    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(60) == 0
    up.wait_line("fleet stopped", 10)
    wait_until(lambda: all(_gone(pid) for pid in pids), 10, "every child to be gone")


def test_a_dead_child_is_reported_and_a_killed_launcher_leaves_no_orphans(
    fleet_up: FleetUp,
) -> None:
    up = fleet_up
    pids = [pid for _url, pid in up.children.values()]
    # A child that dies is reported and the rest keep running.
    worker_pid = up.children["worker-1"][1]
    os.kill(worker_pid, signal.SIGKILL)
    up.wait_line(f"worker-1 (pid {worker_pid}) exited", 20)
    assert httpx.get(f"{up.front}/healthz", timeout=10).status_code == 200
    # The launcher itself SIGKILLed: the kernel signals its children (no orphans).
    up.process.send_signal(signal.SIGKILL)
    up.process.wait(30)
    wait_until(lambda: all(_gone(pid) for pid in pids), 60, "orphans to stop")
