"""The Factory's queue drain loop, under keep-alive holds with no gap in coverage.

The invariant (DESIGN.md section 9, ``docs/scale-to-zero.md``) — removing it or
"simplifying" its order lets the platform evict the Factory mid-task:

- ``kick()`` takes a hold *before* anything looks at the queue, and hands it to the
  drain pass that serves it;
- the pass releases its holds only after a final double-check of the queue finds
  nothing (queued work that is not yet eligible — a retry's backoff — keeps the hold:
  it is queued work);
- a re-kick (a kick while a pass runs) takes its own hold first; the pass adopts it
  and only then releases the earlier ones, so the count never touches zero while
  work is queued or in flight.

The pass is written as a generator of :class:`Step` values so the same code runs on
the worker thread (:class:`DrainLoop`) and, step by step, under a deterministic
scheduler in the property test (``tests/unit/runtime/test_drain_holds.py``).

Who kicks: a NOTIFY or a local wake-up (another thread's ``kick()``), every write
request that ends on the Factory (the middleware in ``quarry.api.app``), startup
recovery, and the poll fallback when a read-only peek finds queued work that nobody
kicked for (a delayed task, a lease the reaper re-queued).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from quarry.core.holds import Holds, HoldToken
from quarry.runtime.queue.worker import Handler, Worker
from quarry.store.db import Engine
from quarry.store.queue.port import TaskQueue
from quarry.store.queue.reads import earliest_queued

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """What a look at the queue found: work eligible now, and when the next queued
    task (eligible or not) becomes eligible (None: nothing queued)."""

    eligible: bool
    next_at: float | None  # time.monotonic() of the earliest queued run_after

    @classmethod
    def nothing(cls) -> Pending:
        return cls(False, None)


@dataclass(frozen=True)
class Step:
    """What a pass did; the driver of the generator waits accordingly."""

    kind: str  # "idle" | "ran" | "wait"
    until: float | None = None  # for "wait": time.monotonic() to wait until


IDLE = Step("idle")
RAN = Step("ran")


class Drain:
    """Kick bookkeeping and the drain pass; thread-safe ``kick()``."""

    def __init__(
        self,
        holds: Holds,
        run_one: Callable[[], bool],
        look: Callable[[], Pending],
        *,
        wake: threading.Event | None = None,
    ) -> None:
        self.holds = holds
        self._run_one = run_one
        self._look = look
        self._wake = wake or threading.Event()
        self._lock = threading.Lock()
        self._kicks: list[HoldToken] = []
        self.passes = 0

    def kick(self, reason: str = "drain", *, wake: bool = True) -> None:
        """Ask for a drain pass; the hold is taken here, before anyone looks.

        ``wake=False`` is for the drain thread itself (it is awake already; setting
        the event would read as one more NOTIFY)."""
        token = self.holds.acquire(reason)
        with self._lock:
            self._kicks.append(token)
        if wake:
            self._wake.set()

    def has_kicks(self) -> bool:
        with self._lock:
            return bool(self._kicks)

    def _take_kicks(self) -> list[HoldToken]:
        with self._lock:
            taken, self._kicks = self._kicks, []
        return taken

    def _release(self, tokens: list[HoldToken]) -> None:
        for token in tokens:
            self.holds.release(token)

    def steps(self) -> Generator[Step, None, None]:
        """The drain loop, one step per ``next()``; never ends by itself (closing
        the generator, as a stopping worker does, releases what it holds)."""
        held: list[HoldToken] = []
        try:
            yield from self._pass(held)
        finally:
            self._release(held)
            held.clear()
            # Kicks no pass took (they landed while the worker was stopping): no pass
            # will serve them now, so their holds go too.
            self._release(self._take_kicks())

    def _pass(self, held: list[HoldToken]) -> Iterator[Step]:
        while True:
            fresh = self._take_kicks()
            if not held and not fresh:
                yield IDLE  # the wake-up, if any, is left for the driver to see
                continue
            # In a pass: whatever woke us is served by this pass, whose final
            # double-check looks at the queue after this point.
            self._wake.clear()
            # Re-kicks arrived holding their own hold: adopt them, then let go of
            # the older ones (never the other way round).
            if fresh:
                self._release(held)
                held[:] = fresh
                self.passes += 1
            if self._run_one():
                yield RAN
                continue
            # The final double-check, still under the hold.
            pending = self._look()
            if pending.eligible:
                # Claimable yet not claimed (a peer holds the row lock, or the claim
                # failed): look again shortly, still holding.
                yield Step("wait", None)
                continue
            later = self._take_kicks()
            if later:
                self._release(held)
                held[:] = later
                continue
            if pending.next_at is not None:
                yield Step("wait", pending.next_at)
                continue
            self._release(held)
            held.clear()
            # A kick that landed after the double-check already holds its own hold;
            # the next iteration serves it.


def look_at_queue(engine: Engine, queues: Sequence[str]) -> Pending:
    """A read-only look at ``queues``: is anything queued, and when is the earliest
    of it eligible? (One aggregate over the claim index; claims nothing.)"""
    with engine.connect() as conn:
        earliest = earliest_queued(conn, list(queues))
    if earliest is None:
        return Pending.nothing()
    delay = (earliest - datetime.now(UTC)).total_seconds()
    return Pending(eligible=delay <= 0, next_at=time.monotonic() + max(delay, 0.0))


class DrainingWorker(Worker):
    """A :class:`Worker` whose loop is a :class:`Drain` under keep-alive holds: the
    Factory's in-process worker (roles ide and all).

    Only the idle loop differs from ``Worker.run``: NOTIFY still sets the wake event
    (now a kick), and the poll fallback peeks read-only and kicks only when it finds
    queued work, so an idle Factory takes no holds and its platform may scale it to
    zero. Claiming, heartbeats, settling and shutdown are the base class's.
    """

    def __init__(
        self,
        queue: TaskQueue,
        handler: Handler,
        *,
        holds: Holds,
        retry_interval: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(queue, handler, **kwargs)
        self.holds = holds
        self.retry_interval = retry_interval
        self.drainer = Drain(holds, self._drain_one, self._look, wake=self._wake)

    def kick(self, reason: str = "drain") -> None:
        """Ask for a drain pass; the hold is taken before this returns."""
        self.drainer.kick(reason)

    def _drain_one(self) -> bool:
        if self._retry_delay is not None and not self.stopping:
            # The last claim failed (the database is away): back off before the next,
            # still under the pass's hold -- queued work may be waiting.
            self._stop.wait(self._retry_delay)
        return not self.stopping and self.run_one()

    def _look(self) -> Pending:
        try:
            return look_at_queue(self.queue.engine, self.queues)
        except Exception as exc:
            # Cannot tell: keep the hold and look again shortly.
            delay = self.health.failed("look at the queue", exc)
            return Pending(False, time.monotonic() + max(delay, self.retry_interval))

    def _peek(self) -> bool:
        try:
            found = look_at_queue(self.queue.engine, self.queues).next_at is not None
        except Exception as exc:
            self.health.failed("peek at the queue", exc)
            return False
        # Idle, and the database answers: whatever failed before has passed.
        self.health.succeeded()
        return found

    def _loop(self) -> None:
        with closing(self.drainer.steps()) as steps:
            self._drive(steps)

    def _drive(self, steps: Iterator[Step]) -> None:
        wake = self._wake
        for step in steps:
            if self.stopping:
                return
            if step is RAN:
                continue
            if step.kind == "wait":
                # Queued but not yet eligible (backing off, or locked by a peer):
                # a bounded wait that a kick or a NOTIFY cuts short.
                until = step.until if step.until is not None else time.monotonic()
                delay = min(max(until - time.monotonic(), 0.0), self.poll_interval)
                if wake.wait(max(delay, 0.01)):
                    wake.clear()
                continue
            woke = wake.wait(self.poll_interval)
            wake.clear()
            if self.stopping:
                return
            if woke and self.drainer.has_kicks():
                continue  # a local kick: its hold is already taken
            if woke or self._peek():
                # A NOTIFY, or the poll finding work nobody kicked for.
                self.drainer.kick("drain", wake=False)
