"""A worker loop: claim, run the handler in a thread, heartbeat, settle.

- Idle workers wait for ``NOTIFY quarry_tasks`` (psycopg 3 ``notifies()`` on a
  dedicated autocommit connection, payload = queue name) and poll every
  ``poll_interval`` seconds as the fallback (and always on SQLite).
- While the handler runs, the lease is extended every ``lease_seconds / 3``.
  A heartbeat that finds the lease lost sets ``task.stop_event`` and the worker
  records nothing for that task: the complete/fail it would have written is fenced.
- A handler that returns completes the task (its return value, JSON-encoded, is the
  result); one that raises fails it, retried with exponential backoff while attempts
  remain; :class:`PermanentFailure` fails it at once; :class:`TaskCancelled` (or any
  exit after cancellation was requested) marks it cancelled.
- The loop holds one connection; by default its claims, heartbeats and completions
  commit asynchronously (``synchronous_commit = off``; see ``PostgresQueue.pinned``):
  a Postgres crash can only make a just-finished task run again, never lose one.
- ``request_stop()`` (SIGTERM/SIGINT when installed) is graceful: no new claims; the
  task in flight may finish within ``shutdown_grace`` seconds, else it is released
  back to the queue (its attempt not counted) and the worker exits.
- A database error never wedges the loop (docs/queue.md "When the database fails"):
  the statement that hit it fails, a connection it left unusable is discarded (the
  next statement reconnects), and the loop retries with capped, jittered backoff
  (:class:`~quarry.runtime.queue.health.LoopHealth`) -- the claim, a heartbeat, and
  the recording of a finished task's outcome alike. Retried writes are fenced by the
  lease token as the first attempt was, so a task whose lease was lost meanwhile is
  refused, never completed by its stale owner. A worker failing for longer than the
  readiness threshold makes its process's ``/readyz`` answer 503.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as stdqueue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from quarry.core.identity import node_name
from quarry.runtime.queue.health import LOOPS, LoopHealth
from quarry.runtime.queue.reaper import Reaper
from quarry.store.queue.port import (
    CANCEL_CHANNEL,
    DEFAULT_QUEUE,
    NOTIFY_CHANNEL,
    LeaseLost,
    Task,
    TaskQueue,
)

log = logging.getLogger(__name__)

Handler = Callable[[Task], object]

# A worker whose last task was short claims up to this many tasks with its next
# completion (docs/queue.md "Prefetch"); tasks it holds but has not started go back to
# the queue as soon as the running handler has taken longer than PREFETCH_HOLD.
DEFAULT_PREFETCH = 32
PREFETCH_HOLD = 0.05


class PermanentFailure(Exception):
    """Raised by a handler: fail the task now, without retrying."""


class TaskCancelled(Exception):
    """Raised by a handler that stopped because ``task.stop_event`` was set."""


def default_owner() -> str:
    """``host:pid:suffix``: the process's name plus a suffix, so two workers in one
    process hold distinct leases."""
    return f"{node_name()}:{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lease_lost: int = 0


class _Runner:
    """One long-lived daemon thread that runs handlers, one at a time.

    Cheaper than a thread per task; a daemon, so a handler still stuck after a
    shutdown released its task cannot keep the process from exiting."""

    def __init__(self) -> None:
        self._jobs: stdqueue.SimpleQueue[Callable[[], None]] = stdqueue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="quarry-handler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._jobs.get()()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)


class Notifier:
    """LISTEN on a dedicated autocommit connection; sets ``wake`` for our queues, and
    passes the id of a running task whose cancel was asked to ``on_cancel``."""

    def __init__(
        self,
        conninfo: str,
        queues: Sequence[str],
        wake: threading.Event,
        on_cancel: Callable[[int], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.queues = frozenset(queues)
        self.wake = wake
        self.on_cancel = on_cancel
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quarry-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Here, not at the top: a local ``quarry run`` builds workers' modules but never
        # listens, and psycopg is 70 ms of its start-up (issue #20, start-up).
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if self.on_cancel is not None:
                        conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    self.ready.set()
                    self.wake.set()  # anything enqueued while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.channel == CANCEL_CHANNEL:
                                if self.on_cancel is not None and note.payload.isdigit():
                                    self.on_cancel(int(note.payload))
                            elif note.payload in self.queues:
                                self.wake.set()
                            if self._stop.is_set():
                                break
            except Exception:
                if self._stop.is_set():
                    return
                log.warning("listen: connection lost; polling until it is back", exc_info=True)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def conninfo_for(queue: TaskQueue) -> str | None:
    if queue.engine.dialect.name != "postgresql":
        return None
    url = queue.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Worker:
    def __init__(
        self,
        queue: TaskQueue,
        handler: Handler,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        owner: str | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        shutdown_grace: float | None = None,
        listen: bool = True,
        reap_interval: float | None = 5.0,
        async_commit: bool = True,
        prefetch: int = DEFAULT_PREFETCH,
        prefetch_hold: float = PREFETCH_HOLD,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self.queue = queue
        self.handler = handler
        self.queues = list(queues)
        self.owner = owner or default_owner()
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.shutdown_grace = lease_seconds / 2 if shutdown_grace is None else shutdown_grace
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stop_deadline: float | None = None
        conninfo = conninfo_for(queue) if listen else None
        self.notifier = (
            Notifier(conninfo, self.queues, self._wake, on_cancel=self.cancel_signalled)
            if conninfo
            else None
        )
        # Running tasks of ours whose cancel was announced (a NOTIFY, or this process's
        # queue object): heartbeat them now, not at the next beat (docs/runs.md).
        self._cancel_hints: set[int] = set()
        self._hints_lock = threading.Lock()
        self._running_id: int | None = None
        self.reaper = Reaper(queue, interval=reap_interval) if reap_interval else None
        self._next_queue = 0
        self._nudge: threading.Event | None = None
        # Tasks claimed in the statement that completed the last one, not started yet.
        # Held at most prefetch * prefetch_hold seconds in all: capped at a sixth of
        # the lease (no heartbeat extends them while they wait).
        self.prefetch_hold = prefetch_hold
        fits = int(lease_seconds / 6 / prefetch_hold) if prefetch_hold > 0 else prefetch
        self.prefetch = max(1, min(prefetch, fits))
        self._ahead: deque[Task] = deque()
        # Whether the last handler finished within prefetch_hold (then prefetch).
        self._short = False
        self._runner = _Runner()
        self.async_commit = async_commit
        self.health = LoopHealth(f"worker {self.owner}")
        # Set after a failed claim: how long to back off before the next one.
        self._retry_delay: float | None = None

    # -- control -----------------------------------------------------------------

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.shutdown_grace
            self._stop.set()
            self._wake.set()
            if self._nudge is not None:
                self._nudge.set()

    def cancel_signalled(self, task_id: int) -> None:
        """A cancel of task ``task_id`` was announced: if it is one of ours, look at
        once (the heartbeat reports it and sets the task's stop event). Any thread."""
        if not self._holds(task_id):
            return
        with self._hints_lock:
            self._cancel_hints.add(task_id)
        self._wake_for_cancel()

    def _holds(self, task_id: int) -> bool:
        return self._running_id == task_id

    def _wake_for_cancel(self) -> None:
        """End the wait of the loop that heartbeats the running task: ``execute``'s
        nudge (not the idle wake-up, which a draining worker would read afterwards
        as a NOTIFY and kick a pass for)."""
        nudge = self._nudge
        if nudge is not None:
            nudge.set()

    def _take_cancel_hints(self) -> set[int]:
        with self._hints_lock:
            hints, self._cancel_hints = self._cancel_hints, set()
        return hints

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully.

        The handler only writes the signal's number to a pipe; a thread reading it
        calls :meth:`request_stop`. A Python signal handler runs in the main thread
        between two bytecodes, possibly while that thread holds the plain,
        non-reentrant lock inside one of our ``threading.Event``s (``clear()`` and
        ``wait()`` hold it): setting an Event right there deadlocked the worker for
        good, now and then, with no line printed (found by the fleet tests)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            # A full pipe already holds a stop request: nothing to add.
            with contextlib.suppress(BlockingIOError):
                os.write(write_fd, bytes([signum & 0xFF]))

        def relay() -> None:
            while True:
                for signum in os.read(read_fd, 64):
                    log.info("worker %s: signal %d, stopping gracefully", self.owner, signum)
                    self.request_stop()

        threading.Thread(target=relay, name="quarry-signals", daemon=True).start()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- loop --------------------------------------------------------------------

    def start_background(self) -> None:
        """Start the listener and the reaper (``run`` does this itself)."""
        if self.notifier is not None:
            self.notifier.start()
        if self.reaper is not None:
            self.reaper.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self.notifier is None or self.notifier.ready.wait(timeout)

    def run(self, *, on_ready: Callable[[], None] | None = None) -> WorkerStats:
        LOOPS.register(self.health)
        self.queue.add_cancel_listener(self.cancel_signalled)
        self.start_background()
        try:
            self.wait_ready()
            if on_ready is not None:
                on_ready()
            with self.queue.pinned(async_commit=self.async_commit):
                self._loop()
                self.release_held()
        finally:
            LOOPS.unregister(self.health)
            self.queue.remove_cancel_listener(self.cancel_signalled)
            if self.notifier is not None:
                self.notifier.stop()
            if self.reaper is not None:
                self.reaper.stop()
        return self.stats

    def _loop(self) -> None:
        """Work until asked to stop (a draining worker orders its passes differently)."""
        while not self._stop.is_set():
            self._wake.clear()
            if not self.run_one():
                # Idle: wait for a wake-up or the poll; after a failed claim, back off
                # (a NOTIFY still cuts it short: the listener reconnecting means the
                # database is back).
                pause = self.poll_interval if self._retry_delay is None else self._retry_delay
                self._wake.wait(pause)

    def drain(self) -> WorkerStats:
        """Run tasks until none is eligible, then return (no listening, no reaper)."""
        with self.queue.pinned(async_commit=self.async_commit):
            while not self._stop.is_set() and self.run_one():
                pass
            self.release_held()
        return self.stats

    def release_held(self) -> None:
        """At the end of the loop: give back what was claimed but not started (the
        tasks prefetched by the last completion). A batched worker also flushes its
        buffered completions here."""
        self._release_ahead()

    def _release_ahead(self) -> None:
        """Give the prefetched, unstarted tasks back to the queue (attempts not
        counted). If that write fails their leases expire and they run then."""
        if not self._ahead:
            return
        ahead = list(self._ahead)
        self._ahead.clear()
        if len(ahead) == 1:
            self._settle_safely(ahead[0], self.queue.release, "released")
            return
        self.release_unstarted(ahead)

    def release_unstarted(self, tasks: Sequence[Task]) -> int:
        """Give claimed tasks that never started back to the queue in one statement
        (``release_many``: queued, attempt not counted); how many were released. If
        the write fails their leases expire and the reaper re-queues them."""
        try:
            released = self.queue.release_many(tasks)
        except Exception:
            log.exception(
                "worker %s: could not release %d prefetched tasks; their leases will "
                "expire and they will run then",
                self.owner,
                len(tasks),
            )
            return 0
        for task in tasks:
            if task.id not in released:
                self._lost(task, "release")
        return len(released)

    def claim_next(self) -> Task | None:
        if self._ahead:
            return self._ahead.popleft()
        for i in range(len(self.queues)):
            name = self.queues[(self._next_queue + i) % len(self.queues)]
            task = self.queue.claim(self.owner, queue=name, lease_seconds=self.lease_seconds)
            if task is not None:
                self._next_queue = (self._next_queue + i + 1) % len(self.queues)
                return task
        return None

    def claim_group(self, limit: int) -> list[Task]:
        """Claim up to ``limit`` tasks in one statement: the fair group claim that
        prefetch and the batched worker use (``complete_many_and_claim``, nothing to
        complete), from the next of our queues that has work (one statement per queue
        tried, in turn). Each task gets its own lease, fenced on its own."""
        for i in range(len(self.queues)):
            name = self.queues[(self._next_queue + i) % len(self.queues)]
            _, tasks = self.queue.complete_many_and_claim(
                [], self.owner, queue=name, lease_seconds=self.lease_seconds, limit=limit
            )
            if tasks:
                self._next_queue = (self._next_queue + i + 1) % len(self.queues)
                return tasks
        return []

    def run_one(self) -> bool:
        """Claim and execute one task; False when nothing was eligible (or the claim
        failed: ``_retry_delay`` then says how long to back off)."""
        prefetched = bool(self._ahead)
        task = self._claim()
        if task is None:
            return False
        if not prefetched:
            self.stats.claimed += 1
        self.execute(task)
        return True

    def _claim(self) -> Task | None:
        """``claim_next`` with the failure streak kept: a failure returns None."""
        try:
            task = self.claim_next()
        except Exception as exc:
            self._retry_delay = self.health.failed("claim", exc)
            return None
        self._retry_delay = None
        self.health.succeeded()
        return task

    def execute(self, task: Task) -> None:
        outcome: dict[str, Any] = {}
        done = threading.Event()
        # Set when the handler finishes or a stop is requested: either ends a wait.
        nudge = threading.Event()
        self._nudge = nudge

        def target() -> None:
            try:
                outcome["result"] = self.handler(task)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                done.set()
                nudge.set()

        began = time.monotonic()
        self._running_id = task.id
        self._runner.submit(target)
        interval = self.lease_seconds / 3
        next_beat = self._first_beat(interval)
        hold_until = began + self.prefetch_hold
        cancel_requested = False
        while not done.is_set():
            now = time.monotonic()
            wait = next_beat - now
            if self._stop_deadline is not None:
                wait = min(wait, self._stop_deadline - now)
            if self._ahead:
                wait = min(wait, hold_until - now)
            chore = self._chore_due()
            if chore is not None:
                wait = min(wait, chore - now)
            nudge.wait(max(wait, 0.0))
            nudge.clear()
            if done.is_set():
                break
            now = time.monotonic()
            if task.id in self._take_cancel_hints():
                next_beat = now  # its cancel was announced: the heartbeat confirms it
            self._chores(now)
            if self._ahead and now >= hold_until:
                # A long task: what we prefetched would wait behind it; let others run it.
                self._release_ahead()
            if self._stop_deadline is not None and now >= self._stop_deadline:
                task.stop_event.set()
                self._settle_safely(task, self.queue.release, "released")
                self.stats.released += 1
                log.info("worker %s: released task %d at shutdown", self.owner, task.id)
                return
            if now >= next_beat:
                next_beat = now + interval
                try:
                    cancel_requested = self._heartbeat(task)
                except LeaseLost:
                    self._lost(task, "heartbeat")
                    done.wait()  # the handler's writes are fenced; let it finish
                    return
                except Exception as exc:
                    # Retried soon (the next statement reconnects), not a third of a
                    # lease later: the lease may run out meanwhile.
                    retry = self.health.failed(f"heartbeat of task {task.id}", exc)
                    next_beat = now + min(retry, interval)
                    continue
                self.health.succeeded()
                if cancel_requested:
                    task.stop_event.set()
        self._running_id = None
        self._short = time.monotonic() - began <= self.prefetch_hold
        self._settle(task, outcome, cancel_requested)

    # -- hooks a batched worker (runtime/queue/batch.py) overrides ---------------------

    def _first_beat(self, interval: float) -> float:
        """When the first heartbeat for a task that starts now is due."""
        return time.monotonic() + interval

    def _heartbeat(self, task: Task) -> bool:
        """Extend the running task's lease; True if cancellation was requested."""
        return self.queue.heartbeat(task, lease_seconds=self.lease_seconds)

    def _chore_due(self) -> float | None:
        """A monotonic time at which ``_chores`` has work while a handler runs."""
        return None

    def _chores(self, now: float) -> None:
        """Work the loop does while a handler runs (nothing here)."""

    def _settle(self, task: Task, outcome: dict[str, Any], cancel_requested: bool) -> None:
        """Record the outcome; a database error retries it with backoff (each retry
        fenced by the lease token) until it is written, the lease is found lost, or a
        stopping worker's grace runs out (the lease then expires and the task runs
        again)."""
        retrying = False
        while True:
            try:
                self._record(task, outcome, cancel_requested, retrying=retrying)
            except LeaseLost:
                self._lost(task, "settle")
                return
            except Exception as exc:
                delay = self.health.failed(f"recording the outcome of task {task.id}", exc)
                if not self._wait_to_retry(delay):
                    log.error(
                        "worker %s: gave up recording the outcome of task %d at shutdown; "
                        "its lease will expire and it will run again",
                        self.owner,
                        task.id,
                    )
                    return
                retrying = True
                continue
            self.health.succeeded()
            return

    def _wait_to_retry(self, delay: float) -> bool:
        """Wait ``delay`` before retrying a write; False once a stopping worker's
        grace has run out (nothing more may be written)."""
        if self._stop_deadline is not None:
            left = self._stop_deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        time.sleep(delay)
        return True

    def _record(
        self, task: Task, outcome: dict[str, Any], cancel_requested: bool, *, retrying: bool
    ) -> None:
        error = outcome.get("error")
        if error is None:
            self._complete(task, outcome.get("result"), retrying=retrying)
            return
        if isinstance(error, TaskCancelled) or (cancel_requested and task.stop_event.is_set()):
            self.queue.acknowledge_cancel(task, f"cancelled: {error}")
            self.stats.cancelled += 1
            return
        retry = not isinstance(error, PermanentFailure)
        settled = self.queue.fail(task, f"{type(error).__name__}: {error}", retry=retry)
        if settled.state == "queued":
            self.stats.retried += 1
        elif settled.state == "cancelled":
            self.stats.cancelled += 1
        else:
            self.stats.failed += 1
        log.info(
            "worker %s: task %d raised %s -> %s",
            self.owner,
            task.id,
            type(error).__name__,
            settled.state,
        )

    def _complete(self, task: Task, result: Any, *, retrying: bool = False) -> None:
        """Record success, at once (a fenced write; the next task starts after it).

        With prefetched tasks still to run, a plain completion (a primary-key update).
        Otherwise complete and claim the next work in the same statement: one task, or
        up to ``prefetch`` when this one was short (``docs/queue.md`` "Prefetch").
        A retry after a failed attempt completes only: the failed attempt may have
        claimed tasks we never saw (their leases expire and the reaper re-queues them),
        and a retry should not risk that again."""
        if self.stopping or retrying or self._ahead:
            self.queue.complete(task, result)
            self.stats.succeeded += 1
            return
        # A stop requested meanwhile releases the prefetched tasks at once.
        self._complete_claiming(task, result, self.prefetch if self._short else 1, self._ahead)
        if self.stopping:
            self._release_ahead()

    def _complete_claiming(
        self, task: Task, result: Any, limit: int, into: MutableSequence[Task]
    ) -> None:
        """Complete ``task`` and claim up to ``limit`` tasks from the next of our
        queues in turn, in one statement; the claimed go to ``into`` (kept even when
        the completion was refused: they are ours) and then :class:`LeaseLost` is
        raised if it was."""
        name = self.queues[self._next_queue % len(self.queues)]
        self._next_queue = (self._next_queue + 1) % len(self.queues)
        if limit == 1:
            completed, following = self.queue.complete_and_claim(
                task, result, self.owner, queue=name, lease_seconds=self.lease_seconds
            )
            claimed = [] if following is None else [following]
        else:
            ids, claimed = self.queue.complete_many_and_claim(
                [(task, result)],
                self.owner,
                queue=name,
                lease_seconds=self.lease_seconds,
                limit=limit,
            )
            completed = task.id in ids
        into.extend(claimed)
        self.stats.claimed += len(claimed)
        if not completed:
            raise LeaseLost(f"task {task.id}: lease lost; complete refused", task_id=task.id)
        self.stats.succeeded += 1

    def _settle_safely(self, task: Task, op: Callable[[Task], None], what: str) -> None:
        try:
            op(task)
        except LeaseLost:
            self._lost(task, what)
        except Exception:
            log.exception("worker %s: %s failed for task %d", self.owner, what, task.id)

    def _lost(self, task: Task, where: str) -> None:
        task.stop_event.set()
        self.stats.lease_lost += 1
        log.warning(
            "worker %s: lease on task %d lost (%s); its outcome is discarded",
            self.owner,
            task.id,
            where,
        )
