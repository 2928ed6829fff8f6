"""A worker that runs many light tasks at once: agent turns, which spend their time
waiting on a model, not on this machine.

:class:`Worker` runs one task at a time, so a ``quarry worker`` process carries one
agent turn at a time, each waiting seconds on its model. This worker keeps up to
``slots`` tasks running, each handler on a thread of its own pool, and goes on
claiming while they wait -- but only while every task it holds is *light*
(``light(task)``, or ``lights(tasks)`` for a claimed group in one look, decided by
the caller after the claim: the run's kind). A task that
is not light (a workflow run) is run as :class:`Worker` runs it: the worker claims
nothing more until it has finished, so a worker never hoards long runs that other
workers could take. What stays as in :class:`Worker`:

- every task keeps its own lease and token; the loop thread heartbeats every held
  lease at once (``heartbeat_many``) every ``lease_seconds / 3``; a task found lost
  has its ``stop_event`` set and its outcome discarded (its writes are fenced);
  a requested cancellation sets the task's ``stop_event``;
- outcomes are recorded by the loop thread (on its pinned connection) as each
  handler finishes, with the same retries, fencing and stats;
- ``request_stop()``: no new claims; the tasks in flight may finish within
  ``shutdown_grace``; those still running then are released back to the queue.

Prefetch (docs/queue.md "Prefetch"): while the tasks it starts are light, the worker
claims up to ``min(free slots, prefetch)`` tasks per statement -- the fair group claim
of :meth:`Worker.claim_group`, each task under its own lease -- and starts them all at
once, so none waits unheartbeated. A claimed task that may not start (one behind a
task that is not light, or any after a stop was requested) is released at once
(``release_many``: attempt not counted). The first claim, and every claim after a
task that is not light, takes one task, until a light one is seen: a worker whose
queue holds workflow runs does not claim and release a group for each.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quarry.runtime.queue.worker import Handler, Worker
from quarry.store.queue.port import Task, TaskQueue

log = logging.getLogger(__name__)


@dataclass
class _Held:
    task: Task
    light: bool
    cancel_requested: bool = False
    outcome: dict[str, Any] = field(default_factory=dict)


class _DaemonPool:
    """Up to ``size`` daemon threads running jobs, started as they are needed. Daemons,
    as :class:`Worker`'s runner: a handler still stuck after a shutdown released its
    task cannot keep the process from exiting."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: stdqueue.SimpleQueue[Callable[[], None]] = stdqueue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle == 0 and self._threads < self.size:
                self._threads += 1
                self._idle += 1
                name = f"quarry-handler-{self._threads}"
                threading.Thread(target=self._run, name=name, daemon=True).start()
            self._idle -= 1
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            finally:
                with self._lock:
                    self._idle += 1


class ConcurrentWorker(Worker):
    def __init__(
        self,
        queue: TaskQueue,
        handler: Handler,
        *,
        slots: int,
        light: Callable[[Task], bool] | None = None,
        lights: Callable[[list[Task]], list[bool]] | None = None,
        **kwargs: Any,
    ) -> None:
        """``light`` tells one task at a time, as each starts; ``lights`` a whole
        claimed group at once (one database query for the group, not one per task),
        the answers in the tasks' order. Give exactly one of them."""
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        if (light is None) == (lights is None):
            raise ValueError("give exactly one of light and lights")
        super().__init__(queue, handler, **kwargs)
        self.slots = slots
        self.light = light
        self.lights = lights
        self._pool = _DaemonPool(slots)
        self._held: dict[int, _Held] = {}
        self._finished: stdqueue.SimpleQueue[int] = stdqueue.SimpleQueue()
        # Claimed in the statement that completed the last task held (``_complete``).
        self._handed: list[Task] = []
        self._folding = False  # settling in the loop (not ``run_one``): may claim
        self._next_beat = 0.0
        # Whether the next claim may take a group: the last task started was light
        # (not at first, so a worker on a queue of workflow runs never claims a group).
        self._grouping = False
        self.peak = 0
        """The most tasks this worker has run at once."""

    # -- the loop -----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set() or self._held:
            self._settle_finished()
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                self._release_running()
                return
            claimed = self._fill()
            self._beat_due()
            if claimed:
                continue
            pause = self.poll_interval if self._retry_delay is None else self._retry_delay
            if self._held:
                pause = min(pause, max(0.0, self._next_beat - time.monotonic()))
            if self._stop_deadline is not None:
                pause = min(pause, max(0.0, self._stop_deadline - time.monotonic()))
            # A finishing handler, a NOTIFY (the notifier) or a stop ends the wait.
            self._wake.wait(pause)
            self._wake.clear()

    def drain(self) -> Any:
        """Run tasks until none is eligible and none is running, then return."""
        with self.queue.pinned(async_commit=self.async_commit):
            while not self._stop.is_set():
                self._settle_finished()
                claimed = self._fill()
                self._beat_due()
                if not claimed and not self._held:
                    break
                if not claimed:
                    self._wake.wait(max(0.0, self._next_beat - time.monotonic()))
                    self._wake.clear()
            while self._held:
                self._wake.wait(1.0)
                self._wake.clear()
                self._settle_finished()
            self.release_held()
        return self.stats

    def run_one(self) -> bool:
        """Claim and run one task to the end (what :class:`Worker` does)."""
        task = self._claim()
        if task is None:
            return False
        self.stats.claimed += 1
        self.execute(task)
        return True

    def _may_start(self) -> bool:
        return not self._stop.is_set() and all(h.light for h in self._held.values())

    def _fill(self) -> bool:
        """Claim while there is room and everything held is light, a group per
        statement (see "Prefetch" above); True if it claimed anything."""
        claimed = False
        while self._may_start() and len(self._held) < self.slots:
            room = self.slots - len(self._held)
            tasks = self._claim_some(min(room, self.prefetch) if self._grouping else 1)
            if not tasks:
                break
            self.stats.claimed += len(tasks)
            claimed = True
            group = self._group_lights(tasks)
            for i, task in enumerate(tasks):
                if not self._may_start():
                    # Behind a task that runs alone, or stopping: let others run them.
                    self.stats.released += self.release_unstarted(tasks[i:])
                    break
                self._start(task, None if group is None else group[i])
        return claimed

    def _group_lights(self, tasks: list[Task]) -> list[bool] | None:
        """Whether each claimed task is light, in one look when ``lights`` was given
        (None otherwise: each is told as it starts). A failure, or a wrong number of
        answers, makes the whole group not light: the first task runs alone, the
        rest go back to the queue."""
        if self.lights is None:
            return None
        try:
            group = self.lights(tasks)
            if len(group) != len(tasks):
                raise ValueError(f"{len(group)} answers for {len(tasks)} tasks")
        except Exception:
            ids = [t.id for t in tasks]
            log.exception("worker %s: cannot tell whether tasks %s are light", self.owner, ids)
            return [False] * len(tasks)
        return group

    def _claim_some(self, limit: int) -> list[Task]:
        """Up to ``limit`` tasks in one statement; a failed claim returns none and
        sets ``_retry_delay`` (as :meth:`Worker._claim`)."""
        if limit <= 1:
            task = self._claim()
            return [] if task is None else [task]
        try:
            tasks = self.claim_group(limit)
        except Exception as exc:
            self._retry_delay = self.health.failed("claim", exc)
            return []
        self._retry_delay = None
        self.health.succeeded()
        return tasks

    def _start(self, task: Task, light: bool | None = None) -> None:
        if light is None:
            assert self.light is not None  # without lights, _group_lights told nothing
            try:
                light = self.light(task)
            except Exception:
                log.exception(
                    "worker %s: cannot tell whether task %d is light", self.owner, task.id
                )
                light = False
        self._grouping = light
        held = _Held(task, light)
        if not self._held:
            self._next_beat = time.monotonic() + self.lease_seconds / 3
        self._held[task.id] = held
        self.peak = max(self.peak, len(self._held))

        def target() -> None:
            try:
                held.outcome["result"] = self.handler(task)
            except BaseException as exc:
                held.outcome["error"] = exc
            finally:
                self._finished.put(task.id)
                self._wake.set()

        self._pool.submit(target)

    def _settle_finished(self) -> None:
        """Record what finished since the last look: the successes of several tasks
        in one statement (``complete_many``, each row fenced by its own lease token),
        the rest one by one as :class:`Worker` records them."""
        finished: list[_Held] = []
        while True:
            try:
                task_id = self._finished.get_nowait()
            except stdqueue.Empty:
                break
            held = self._held.pop(task_id, None)
            if held is None or (held.task.stop_event.is_set() and not held.cancel_requested):
                continue  # released at shutdown or lost: nothing to record
            finished.append(held)
        successes = [h for h in finished if "error" not in h.outcome]
        if len(successes) > 1 and self._complete_together(successes):
            finished = [h for h in finished if "error" in h.outcome]
        self._folding = True
        try:
            for held in finished:
                self._settle(held.task, held.outcome, held.cancel_requested)
        finally:
            self._folding = False
        self._start_handed()

    def _complete_together(self, done: list[_Held]) -> bool:
        """One statement for several successes; False if it failed as a whole (then
        nothing was written, and each is recorded on its own, with retries)."""
        try:
            completed = self.queue.complete_many([(h.task, h.outcome.get("result")) for h in done])
        except Exception:
            log.warning(
                "worker %s: recording %d successes together failed; recording each",
                self.owner,
                len(done),
                exc_info=True,
            )
            return False
        self.health.succeeded()
        for held in done:
            if held.task.id in completed:
                self.stats.succeeded += 1
            else:
                self._lost(held.task, "complete")
        return True

    def _holds(self, task_id: int) -> bool:
        return task_id in self._held

    def _wake_for_cancel(self) -> None:
        self._wake.set()  # the loop heartbeats every held task (``_beat_due``)

    def _beat_due(self) -> None:
        hinted = self._take_cancel_hints()
        if not self._held or (time.monotonic() < self._next_beat and not hinted):
            return
        interval = self.lease_seconds / 3
        running = [h.task for h in self._held.values()]
        try:
            alive = self.queue.heartbeat_many(running, lease_seconds=self.lease_seconds)
        except Exception as exc:
            retry = self.health.failed(f"heartbeat of {len(running)} tasks", exc)
            self._next_beat = time.monotonic() + min(retry, interval)
            return
        self.health.succeeded()
        self._next_beat = time.monotonic() + interval
        for task in running:
            held = self._held[task.id]
            if task.id not in alive:
                self._lost(task, "heartbeat")
                continue
            if alive[task.id] and not held.cancel_requested:
                held.cancel_requested = True
                task.stop_event.set()

    def _release_running(self) -> None:
        for held in list(self._held.values()):
            held.task.stop_event.set()
            self._settle_safely(held.task, self.queue.release, "released")
            self.stats.released += 1
            log.info("worker %s: released task %d at shutdown", self.owner, held.task.id)
        self._held.clear()

    def _complete(self, task: Task, result: Any, *, retrying: bool = False) -> None:
        """Record success. When it leaves the worker holding nothing (a workflow run,
        run alone, or the last light task), complete it and claim the next task in
        one statement, as :class:`Worker` does, and start that task at once: one
        statement per task where there were two. Otherwise (others still running,
        stopping, or a retry after a failed write) complete it alone; the loop
        claims when there is room."""
        if self.stopping or retrying or self._held or not self._folding:
            self.queue.complete(task, result)
            self.stats.succeeded += 1
            return
        self._complete_claiming(task, result, 1, self._handed)

    def _start_handed(self) -> None:
        """Start the tasks claimed with a completion (or release them if they may not
        start now: a stop was requested)."""
        while self._handed:
            task = self._handed.pop(0)
            if not self._may_start():
                self.stats.released += self.release_unstarted([task])
                continue
            group = self._group_lights([task])
            self._start(task, None if group is None else group[0])
