"""Stopping a run's steps while they run: step timeouts, the run's deadline, a stop.

The engine is synchronous: a step blocks its thread inside a database driver, so
checking ``should_stop`` between steps cannot end a long statement. A
:class:`Watchdog` is one thread per run that watches three things — the timeout of
every step in flight, the run's deadline, and the caller's ``should_stop`` (asked
every ``poll`` seconds) — and, when one of them fires, records why (a
:class:`Stop`; the first one wins, because the run is over either way) and
interrupts every statement the run has in flight through the connectors'
``interrupt()`` (DuckDB's ``interrupt()``, a Postgres cancel request). It
interrupts again every quarter second while statements remain, so a statement
that started just after an interrupt is not missed.

The step whose statement was interrupted fails with the stop's error
(:meth:`Stop.error`), so the run ends ``cancelled`` (stopped), or ``failed`` naming
the step over its timeout or the deadline. A step that cannot be interrupted (it
runs no statement) finishes first; the runner then fails it if the timeout was its
own, and every later step sees the stop before it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from quarry.runtime.engine.errors import (
    RunCancelled,
    RunDeadlineExceeded,
    StepTimedOut,
    WorkflowError,
)

log = logging.getLogger(__name__)

REINTERRUPT_SECONDS = 0.25


class Interruptible(Protocol):
    """What a statement in flight runs on: a connector."""

    def interrupt(self) -> None: ...


@dataclass(frozen=True)
class Stop:
    """Why a run's statements were interrupted."""

    kind: Literal["stopped", "timeout", "deadline"]
    seconds: float = 0.0
    step: str = ""
    task: str = ""

    def error(self, step: str, task: str) -> WorkflowError:
        """The error the step at ``step`` fails with (a timeout names its own step)."""
        if self.kind == "stopped":
            return RunCancelled("the run was stopped", step=step, task=task)
        if self.kind == "deadline":
            return RunDeadlineExceeded(
                f"the run passed its deadline ({self.seconds:g} s); the step was interrupted",
                step=step,
                task=task,
                deadline_seconds=self.seconds,
            )
        return StepTimedOut(
            f"the step ran longer than its timeout of {self.seconds:g} s and was interrupted",
            step=self.step,
            task=self.task,
            timeout_seconds=self.seconds,
        )


@dataclass(frozen=True)
class Deadline:
    """The run must end by ``at`` (``time.time()`` seconds); ``seconds`` is the
    configured limit, for the error message."""

    at: float
    seconds: float


@dataclass
class _Timer:
    due: float  # time.monotonic()
    seconds: float
    step: str
    task: str


class Watchdog:
    """One per run; ``close()`` it when the run ends. Thread-safe."""

    def __init__(
        self,
        *,
        should_stop: Callable[[], bool] | None = None,
        deadline: Deadline | None = None,
        poll: float = 0.2,
    ) -> None:
        self._should_stop = should_stop
        self._deadline_seconds = deadline.seconds if deadline else 0.0
        # Wall-clock deadline -> monotonic, once: a clock step does not move it.
        self._deadline = (
            time.monotonic() + (deadline.at - time.time()) if deadline is not None else None
        )
        self._poll = poll
        self._cond = threading.Condition()
        self._timers: dict[int, _Timer] = {}
        self._next_timer = 0
        self._running: Counter[Interruptible] = Counter()
        self._stop: Stop | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="quarry-watchdog", daemon=True)
        self._thread.start()

    @property
    def stop(self) -> Stop | None:
        with self._cond:
            return self._stop

    def check(self, step: str, task: str) -> None:
        """Before a step: raise the stop's error if the run must not go on."""
        with self._cond:
            self._fire_due(time.monotonic())
            stop = self._stop
        if stop is not None:
            raise stop.error(step, task)

    def own_timeout(self, step: str) -> Stop | None:
        """The stop, if it is the timeout of the step at ``step``."""
        stop = self.stop
        if stop is not None and stop.kind == "timeout" and stop.step == step:
            return stop
        return None

    @contextmanager
    def step(self, step: str, task: str, seconds: float | None) -> Iterator[None]:
        """While the step runs, interrupt it ``seconds`` after it started (if given)."""
        if seconds is None:
            yield
            return
        with self._cond:
            ident = self._next_timer
            self._next_timer += 1
            self._timers[ident] = _Timer(time.monotonic() + seconds, seconds, step, task)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                del self._timers[ident]

    @contextmanager
    def statement(self, target: Interruptible, step: str, task: str) -> Iterator[None]:
        """Run a statement on ``target``, interruptible until it returns."""
        with self._cond:
            self._fire_due(time.monotonic())
            if self._stop is not None:
                raise self._stop.error(step, task)
            self._running[target] += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._running[target] -= 1
                if self._running[target] <= 0:
                    del self._running[target]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                self._fire_due(time.monotonic())
                targets = list(self._running) if self._stop is not None else []
            for target in targets:
                self._interrupt(target)
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(self._wait_seconds(time.monotonic()))

    def _fire_due(self, now: float) -> None:
        """Record the first reason to stop that holds now (under the lock)."""
        if self._stop is not None:
            return
        if self._should_stop_now():
            self._stop = Stop("stopped")
        elif self._deadline is not None and now >= self._deadline:
            self._stop = Stop("deadline", self._deadline_seconds)
        else:
            due = [t for t in self._timers.values() if t.due <= now]
            if due:
                first = min(due, key=lambda t: t.due)
                self._stop = Stop("timeout", first.seconds, first.step, first.task)
        if self._stop is not None:
            log.info("run stopping: %s", self._stop)

    def _should_stop_now(self) -> bool:
        if self._should_stop is None:
            return False
        try:
            return self._should_stop()
        except Exception:
            # A failing callback must not kill the thread that enforces the limits.
            log.warning("should_stop failed; asked again at the next poll", exc_info=True)
            return False

    def _wait_seconds(self, now: float) -> float | None:
        if self._stop is not None:
            return REINTERRUPT_SECONDS if self._running else None
        waits = [t.due - now for t in self._timers.values()]
        if self._deadline is not None:
            waits.append(self._deadline - now)
        if self._should_stop is not None:
            waits.append(self._poll)
        return max(min(waits), 0.0) if waits else None

    def _interrupt(self, target: Interruptible) -> None:
        try:
            target.interrupt()
        except Exception:
            log.warning("could not interrupt a statement on %r", target, exc_info=True)
