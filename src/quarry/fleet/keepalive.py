"""The self keep-alive: while the Factory holds work, one request is always in flight.

Platforms that scale on in-flight HTTP requests (Azure Container Apps' HTTP rule,
Knative, KEDA's HTTP add-on) stop a replica once no request has been open for a
cooldown. Work that outlives a request takes a hold (:mod:`quarry.core.holds`);
while the count is above zero this loop keeps a long-poll
``GET {QUARRY_SELF_URL}/keepalive?hold=45`` open through the platform's own ingress,
so the platform sees a request in flight and keeps the replica.

- Before a long-poll's hold runs out the next one is issued, while the previous is
  still open (they overlap; there is never a moment without one).
- A long-poll that ends early while holds remain (an error, a restart of the
  ingress) is re-issued at once, then with a short backoff while it keeps failing.
- When the last hold is released the server side answers every open long-poll
  (``GET /keepalive`` waits "for that long or until no holds are left") and the
  loop waits, idle, for the next hold: an idle Factory sends nothing, and scales
  to zero after the platform's cooldown.
- With ``QUARRY_SELF_URL`` unset (local development) or ``QUARRY_MIN_REPLICAS`` at
  1 or more (always on) the loop is dormant: nothing is started.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import httpx

from quarry.core.holds import Holds

log = logging.getLogger(__name__)


@dataclass
class KeepAliveStats:
    issued: int = 0
    failed: int = 0
    completed: int = 0
    in_flight: int = 0


class SelfKeepAlive:
    """A background thread that covers every busy period with a long-poll."""

    def __init__(
        self,
        holds: Holds,
        self_url: str,
        *,
        hold_seconds: float = 45.0,
        renew_before: float | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        if hold_seconds <= 0:
            raise ValueError("hold_seconds must be positive")
        self.holds = holds
        self.url = self_url.rstrip("/") + "/keepalive"
        self.hold_seconds = hold_seconds
        # Re-issue this long before the open poll's hold ends (overlap).
        self.renew_before = (
            min(10.0, hold_seconds / 3) if renew_before is None else min(renew_before, hold_seconds)
        )
        self.max_backoff = max_backoff
        self.stats = KeepAliveStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quarry-keepalive", daemon=True)
        self._client = httpx.Client(timeout=httpx.Timeout(hold_seconds + 15.0, connect=5.0))

    def start(self) -> None:
        log.info(
            "keep-alive: long-polls %s?hold=%g while holds are taken", self.url, self.hold_seconds
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.holds.wake_waiters()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.holds.wait(lambda count: count > 0 or self._stop.is_set())
            if self._stop.is_set():
                return
            self._cover_busy_period()

    def _cover_busy_period(self) -> None:
        backoff = 0.0
        while not self._stop.is_set() and self.holds.count > 0:
            if backoff:
                self._stop.wait(backoff)
                if self._stop.is_set() or self.holds.count == 0:
                    return
            ended = threading.Event()
            failed = threading.Event()
            threading.Thread(
                target=self._poll, args=(ended, failed), name="quarry-keepalive-poll", daemon=True
            ).start()
            renew_at = time.monotonic() + self.hold_seconds - self.renew_before

            def settled(count: int, ended: threading.Event = ended) -> bool:
                return count == 0 or ended.is_set() or self._stop.is_set()

            while True:
                self.holds.wait(settled, timeout=max(renew_at - time.monotonic(), 0.0))
                if self._stop.is_set() or self.holds.count == 0:
                    return  # the open poll ends by itself now that no holds are left
                if ended.is_set():
                    # Ended early while still busy: re-issue (back off while failing).
                    backoff = min(max(backoff * 2, 0.1), self.max_backoff) if failed.is_set() else 0
                    break
                if time.monotonic() >= renew_at:
                    backoff = 0.0
                    break  # issue the next poll; this one stays open until it expires

    def _poll(self, ended: threading.Event, failed: threading.Event) -> None:
        with self._stats_lock:
            self.stats.issued += 1
            self.stats.in_flight += 1
        try:
            response = self._client.get(self.url, params={"hold": f"{self.hold_seconds:g}"})
            response.raise_for_status()
            with self._stats_lock:
                self.stats.completed += 1
        except Exception as exc:
            failed.set()
            with self._stats_lock:
                self.stats.failed += 1
            if not self._stop.is_set():
                log.warning("keep-alive: long-poll to %s failed: %s", self.url, exc)
        finally:
            with self._stats_lock:
                self.stats.in_flight -= 1
            ended.set()
            self.holds.wake_waiters()


def self_keepalive(
    holds: Holds,
    self_url: str | None,
    *,
    min_replicas: int,
    hold_seconds: float,
    max_hold_seconds: float,
) -> SelfKeepAlive | None:
    """The keep-alive this process needs, or None when it is dormant."""
    if not self_url or min_replicas >= 1:
        return None
    return SelfKeepAlive(holds, self_url, hold_seconds=min(hold_seconds, max_hold_seconds))
