"""How a database loop (a worker, the schedule driver, a reaper) copes with failures.

Every loop that works on the state database records each attempt here: a success
ends a failure streak, a failure extends it. The streak decides two things:

- **Backoff.** After a failure the loop waits ``Backoff.delay`` before trying again:
  exponential from ``base``, capped at ``cap``, with jitter so a fleet of workers
  that lost the database together does not reconnect in lockstep. The cap is small
  (seconds), because the point is to notice quickly that the database is back.
- **Readiness.** A loop whose streak has lasted ``unready_after`` seconds (the
  ``QUARRY_QUEUE_UNREADY_AFTER_SECONDS`` setting) reports a problem; ``/readyz`` of
  its process (the worker's own HTTP server, or serve/ide running in-process
  workers) answers 503 naming it, so an orchestrator restarts a worker that cannot
  recover on its own. The first success clears it.

Loops register themselves in :data:`LOOPS` while they run; readiness reads the
registry, so whoever starts a loop needs no extra wiring to make it observable.
Problems name the exception type only: an error's text may carry connection details.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_UNREADY_AFTER = 30.0
# A loop that keeps failing logs one line per this many seconds, not one per attempt.
LOG_EVERY = 30.0


@dataclass(frozen=True)
class Backoff:
    """``min(cap, base * 2 ** (failures - 1))`` seconds, of which the upper half is
    jitter: the delay is uniform in [d/2, d]."""

    base: float = 0.05
    cap: float = 2.0

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(failures - 1, 0))
        jitter: float = random.uniform(0.0, ceiling / 2)  # noqa: S311 (not a secret)
        return ceiling / 2 + jitter


class LoopHealth:
    """The failure streak of one loop. Thread-safe: readiness reads it from the HTTP
    thread while the loop writes it."""

    def __init__(self, name: str, *, backoff: Backoff | None = None) -> None:
        self.name = name
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error = ""
        self._logged_at = float("-inf")

    @property
    def failures(self) -> int:
        """Consecutive failures in the current streak (0: the last attempt succeeded)."""
        return self._failures

    def succeeded(self) -> None:
        if self._failures == 0:
            return  # the hot path: a loop calls this per claim (a stale read is harmless)
        with self._lock:
            if self._failures == 0:
                return
            failures, since = self._failures, self._failing_since
            self._failures, self._failing_since, self._last_error = 0, None, ""
            self._logged_at = float("-inf")
        lasted = time.monotonic() - (since or time.monotonic())
        log.warning(
            "%s: recovered after %d failed attempt(s) over %.1fs", self.name, failures, lasted
        )

    def failed(self, what: str, exc: BaseException) -> float:
        """Record a failed attempt at ``what``; returns how long to wait before the
        next one. Logs the first failure of a streak with its traceback, then one
        line per :data:`LOG_EVERY` seconds."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = now
            self._last_error = type(exc).__name__
            failures = self._failures
            loud = now - self._logged_at >= LOG_EVERY
            if loud:
                self._logged_at = now
        if failures == 1:
            log.warning("%s: %s failed; retrying with backoff", self.name, what, exc_info=exc)
        elif loud:
            log.warning(
                "%s: %s still failing (%d attempts, last: %s: %s)",
                self.name,
                what,
                failures,
                type(exc).__name__,
                exc,
            )
        return self.backoff.delay(failures)

    def problem(self, unready_after: float) -> str | None:
        """Why this loop is not ready, or None: failing for ``unready_after`` s."""
        with self._lock:
            since, failures, error = self._failing_since, self._failures, self._last_error
        if since is None:
            return None
        lasted = time.monotonic() - since
        if lasted < unready_after:
            return None
        return f"{self.name}: failing for {lasted:.0f}s ({failures} attempts, last: {error})"


class LoopRegistry:
    """The loops running in this process, for readiness."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loops: dict[int, LoopHealth] = {}

    def register(self, health: LoopHealth) -> None:
        with self._lock:
            self._loops[id(health)] = health

    def unregister(self, health: LoopHealth) -> None:
        with self._lock:
            self._loops.pop(id(health), None)

    def problems(self, unready_after: float) -> list[str]:
        with self._lock:
            loops = list(self._loops.values())
        return [p for h in loops if (p := h.problem(unready_after)) is not None]

    def check(self, unready_after: float) -> str:
        """``ok``, or ``failed: ...`` naming every loop past the threshold (the
        shape of a ``/readyz`` check)."""
        problems = self.problems(unready_after)
        return "ok" if not problems else "failed: " + "; ".join(problems)


LOOPS = LoopRegistry()
