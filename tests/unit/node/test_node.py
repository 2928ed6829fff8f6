"""The node's lifecycle: parts start in the documented order and stop in reverse; a
part that fails to start stops the ones already started; every part gets its stop
even when one fails; ``Node.run`` ends on SIGTERM and when a run worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from quarry.core.settings import Settings
from quarry.node.components import RunWorkers
from quarry.node.node import Node
from quarry.node.paths import state_paths
from quarry.runtime.queue.worker import Worker, WorkerStats
from quarry.runtime.services import Services


class Part:
    """A blocking part that writes what happens to it into a shared journal."""

    def __init__(
        self, name: str, journal: list[str], *, fail_start: bool = False, fail_stop: bool = False
    ) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.fail_stop = fail_stop

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.append(f"start {self.name}")

    def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


class StandInWorker:
    """What RunWorkers needs of a queue worker: a loop that runs until asked to stop,
    or raises when told to fail."""

    def __init__(self, *, fail: bool = False) -> None:
        self.owner = "stand-in"
        self.fail = fail
        self._stop = threading.Event()

    def run(self) -> WorkerStats:
        if self.fail:
            raise RuntimeError("the database went away for good")
        self._stop.wait()
        return WorkerStats()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return True

    def request_stop(self) -> None:
        self._stop.set()


def _node(journal: list[str], **parts: Any) -> Node:
    # Only the node's bookkeeping is exercised: no part here touches the services.
    node = Node(cast(Services, object()))
    node.scheduling = parts.get("scheduling", Part("scheduling", journal))  # type: ignore[assignment]
    node.scale_to_zero = parts.get("scale", Part("scale-to-zero", journal))  # type: ignore[assignment]
    node.factory = parts.get("factory", Part("factory", journal))
    node.worker_http = parts.get("http", Part("worker-http", journal))  # type: ignore[assignment]
    return node


async def _start_stop(node: Node) -> None:
    await node.start()
    await node.stop()


def test_parts_start_in_order_and_stop_in_reverse() -> None:
    journal: list[str] = []
    node = _node(journal)
    assert [c.name for c in node.components()] == [
        "worker-http",
        "scheduling",
        "scale-to-zero",
        "factory",
    ]
    asyncio.run(_start_stop(node))
    assert journal == [
        "start worker-http",
        "start scheduling",
        "start scale-to-zero",
        "start factory",
        "stop factory",
        "stop scale-to-zero",
        "stop scheduling",
        "stop worker-http",
    ]


def test_a_part_that_cannot_start_stops_those_started() -> None:
    journal: list[str] = []
    node = _node(journal, scale=Part("scale-to-zero", journal, fail_start=True))
    with pytest.raises(RuntimeError, match="scale-to-zero cannot start"):
        asyncio.run(node.start())
    assert journal == [
        "start worker-http",
        "start scheduling",
        "stop scheduling",
        "stop worker-http",
    ]


def test_every_part_is_stopped_when_one_stop_fails() -> None:
    journal: list[str] = []
    node = _node(journal, scheduling=Part("scheduling", journal, fail_stop=True))
    with pytest.raises(RuntimeError, match="scheduling cannot stop"):
        asyncio.run(_start_stop(node))
    assert journal[-4:] == [
        "stop factory",
        "stop scale-to-zero",
        "stop scheduling",
        "stop worker-http",
    ]


def test_run_ends_on_sigterm_after_a_graceful_stop() -> None:
    journal: list[str] = []
    node = _node(journal)
    worker = StandInWorker()
    node.run_workers = RunWorkers([cast(Worker, worker)], on_exit=node.request_stop)

    def started() -> None:
        journal.append("started")
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the node's loop, not fatal

    node.run(on_started=started)
    assert journal[:5] == [
        "start worker-http",
        "start scheduling",
        "start scale-to-zero",
        "start factory",
        "started",
    ]
    assert journal[5:] == [
        "stop factory",
        "stop scale-to-zero",
        "stop scheduling",
        "stop worker-http",
    ]
    assert len(node.run_workers.stats) == 1  # the worker's loop ended and reported


def test_run_ends_and_raises_when_a_run_worker_dies() -> None:
    journal: list[str] = []
    node = _node(journal)
    node.run_workers = RunWorkers([cast(Worker, StandInWorker(fail=True))])
    node.run_workers.on_exit = node.request_stop
    with pytest.raises(RuntimeError, match="went away for good"):
        node.run()
    assert journal[-1] == "stop worker-http"  # everything else was still stopped


def test_state_paths_are_decided_once_from_the_settings(tmp_path: Path) -> None:
    paths = state_paths(Settings(data_dir=tmp_path / "d"))
    assert paths.data_dir == (tmp_path / "d").resolve()
    assert paths.cache_dir == paths.data_dir / "cache"
    assert paths.workspaces_dir == paths.data_dir / "workspaces"
    elsewhere = state_paths(Settings(data_dir=tmp_path / "d", workspaces_dir=tmp_path / "w"))
    assert elsewhere.workspaces_dir == tmp_path / "w"
    default = state_paths(Settings())
    assert default.data_dir == (Path.cwd() / ".quarry").resolve()
