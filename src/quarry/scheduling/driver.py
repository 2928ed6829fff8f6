"""The global driver: a loop on a thread that ticks schedules, monitors and upkeep.

It runs on every eligible node (``topology.global_driver``: ide, worker, all) and
needs no coordination: exactly-once comes from the compare-and-swap in
:mod:`quarry.scheduling.ticks`, so any number of drivers may tick at once and any
of them may die at any moment.

Between ticks it sleeps until the earliest ``next_run_at`` or ``interval`` seconds,
whichever comes first, so a fire is late by a query's latency rather than by up to
a tick. The same loop runs the queue's lease reaper (every ``reap_interval``) and
purges finished tasks older than ``purge_after`` (every ``purge_interval``).
Exactly-once does not depend on the nodes' clocks agreeing; a node whose clock is
ahead only fires early.

A failed tick (the database restarting, a deadlock, a lost connection) is retried
with capped, jittered backoff on fresh pool connections (pre-pinged); ticking longer
than ``QUARRY_QUEUE_UNREADY_AFTER_SECONDS`` without success makes the node's
``/readyz`` answer 503 (:mod:`quarry.runtime.queue.health`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from quarry.core.clock import utcnow
from quarry.core.identity import node_name
from quarry.runtime.queue.health import LOOPS, LoopHealth
from quarry.runtime.queue.reaper import reap_once
from quarry.scheduling.ticks import (
    Clock,
    Fire,
    ScheduleServices,
    earliest_due,
    tick_monitor_schedules,
    tick_schedules,
)

log = logging.getLogger(__name__)

# Seconds before looking again at rows that were still due after a tick.
BUSY_RETRY = 0.05


@dataclass
class DriverStats:
    ticks: int = 0
    fired: int = 0
    reaped: int = 0
    purged: int = 0
    errors: int = 0
    fires: list[Fire] = field(default_factory=list)


class Driver:
    def __init__(
        self,
        svc: ScheduleServices,
        *,
        interval: float = 1.0,
        catchup: float = 5.0,
        reap_interval: float = 5.0,
        purge_interval: float = 3600.0,
        purge_after: float = 7 * 86400.0,
        clock: Clock = utcnow,
        node: str | None = None,
        keep_fires: int = 0,
    ) -> None:
        self.svc = svc
        self.engine = svc.engine
        self.queue = svc.queue
        self._interval = interval
        self.catchup = catchup
        self.reap_interval = reap_interval
        self.purge_interval = purge_interval
        self.purge_after = purge_after
        self.clock = clock
        self.node = node or node_name()
        self.keep_fires = keep_fires
        self.stats = DriverStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reap = 0.0
        self._next_purge = time.monotonic() + purge_interval
        self.health = LoopHealth(f"driver {self.node}")

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        if value <= 0:
            raise ValueError("the tick interval must be positive")
        self._interval = value
        self._wake.set()

    def tick(self) -> list[Fire]:
        """One pass: fire due schedules and monitors, then the upkeep that is due."""
        now = self.clock()
        fires = tick_schedules(self.svc, now=now, node=self.node, catchup=self.catchup)
        fires += tick_monitor_schedules(self.svc, now=now, node=self.node, catchup=self.catchup)
        self.stats.ticks += 1
        self.stats.fired += len(fires)
        if self.keep_fires:
            self.stats.fires = (self.stats.fires + fires)[-self.keep_fires :]
        for fire in fires:
            log.info(
                "driver %s: fired %s for %s (%s%s)",
                self.node,
                fire.name,
                fire.scheduled_for.isoformat(),
                fire.outcome,
                f", {fire.coalesced} missed windows folded in" if fire.coalesced else "",
            )
        self._upkeep()
        return fires

    def _upkeep(self) -> None:
        mono = time.monotonic()
        if mono >= self._next_reap:
            self._next_reap = mono + self.reap_interval
            self.stats.reaped += len(reap_once(self.queue))
        if mono >= self._next_purge:
            self._next_purge = mono + self.purge_interval
            purged = self.queue.purge_finished(self.purge_after)
            self.stats.purged += purged
            if purged:
                log.info("driver %s: purged %d finished tasks", self.node, purged)

    def _sleep_for(self) -> float:
        due = earliest_due(self.engine)
        if due is None:
            return self._interval
        ahead = (due - self.clock()).total_seconds()
        if ahead > 0:
            return min(self._interval, ahead)
        # Still due after our tick: another node holds those rows (it is firing them)
        # or they failed. Look again soon, but never spin against the database.
        return min(self._interval, BUSY_RETRY)

    def run(self) -> None:
        log.info("driver %s: ticking every %.3gs", self.node, self._interval)
        LOOPS.register(self.health)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                    wait = self._sleep_for()
                except Exception as exc:
                    self.stats.errors += 1
                    wait = min(self._interval, self.health.failed("tick", exc))
                else:
                    self.health.succeeded()
                self._wake.clear()
                if wait > 0:
                    self._wake.wait(wait)
        finally:
            LOOPS.unregister(self.health)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="quarry-driver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
