"""Queue workers that execute runs: in process (roles ide and all) or as the
``quarry worker`` process."""

from __future__ import annotations

import logging
import threading

from quarry.core.holds import Holds
from quarry.runtime.queue import Task
from quarry.runtime.queue.drain import DrainingWorker
from quarry.runtime.queue.worker import Worker
from quarry.runtime.runs.executor import RunExecutor, RunLimits
from quarry.runtime.runs.service import RUN_TASK_KIND
from quarry.runtime.services import Services

log = logging.getLogger(__name__)


def build_worker(
    svc: Services,
    *,
    lease_seconds: float = 30.0,
    shutdown_grace: float | None = None,
    holds: Holds | None = None,
    limits: RunLimits | None = None,
) -> Worker:
    """With ``holds`` (the Factory, which may scale to zero) the worker drains under
    keep-alive holds and every run it executes holds one too (``docs/scale-to-zero.md``)."""
    queue = svc.queue
    executor = RunExecutor(svc, svc.paths.cache_dir, limits=limits)

    def handle(task: Task) -> object:
        if task.kind != RUN_TASK_KIND:
            raise ValueError(f"this worker runs {RUN_TASK_KIND!r} tasks, not {task.kind!r}")
        if holds is None:
            return executor.handle(task)
        with holds.hold("run"):
            return executor.handle(task)

    if holds is not None:
        return DrainingWorker(
            queue, handle, holds=holds, lease_seconds=lease_seconds, shutdown_grace=shutdown_grace
        )
    return Worker(queue, handle, lease_seconds=lease_seconds, shutdown_grace=shutdown_grace)


class BackgroundWorkers:
    """Workers on threads of a serving process; stopped with the process."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.threads = [
            threading.Thread(target=w.run, name=f"quarry-worker-{i}", daemon=True)
            for i, w in enumerate(workers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        for worker in self.workers:
            worker.wait_ready()
        log.info("started %d in-process worker(s)", len(self.workers))

    def stop(self, timeout: float = 30.0) -> None:
        for worker in self.workers:
            worker.request_stop()
        for thread in self.threads:
            thread.join(timeout)
