"""One process-wide wake-up source for everyone following runs' events.

Streams do not poll each on their own schedule: each subscribes to a run id and waits
on its own ``asyncio.Event``, which the hub sets when the run gets a new event. On
Postgres the hub holds one ``LISTEN quarry_run_events`` connection for the whole
process (not one per stream) and fans each notification out by run id; if that
connection drops it reconnects with backoff and, meanwhile, ``live`` is False so the
streams fall back to polling at the short fallback interval. On SQLite the wake-up
comes from the local writers' commits (store/run_notify.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from quarry.store import run_notify
from quarry.store.db import Engine

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 0.2
"""How often a stream polls while push is unavailable (the LISTEN connection is down)."""
RECONNECT_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


class RunEventHub:
    def __init__(self, engine: Engine, *, poll_seconds: float) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._conninfo = run_notify.listen_conninfo(engine)
        self._live = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe_local: object = None
        self._failures = 0

    @property
    def live(self) -> bool:
        """Push is working: a new event wakes its followers at once."""
        return self._live

    def wait_seconds(self) -> float:
        """How long a stream waits for a wake-up before polling anyway."""
        return self.poll_seconds if self._live else min(self.poll_seconds, FALLBACK_POLL_SECONDS)

    def start(self) -> None:
        """Begin listening (on the running loop); idempotent."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._conninfo is None:
            run_notify.watch_local_commits(self.engine)
            self._unsubscribe_local = run_notify.subscribe_local(self._from_writer_thread)
            self._live = True
        else:
            self._task = asyncio.create_task(self._listen(self._conninfo), name="run-events")

    async def close(self) -> None:
        if callable(self._unsubscribe_local):
            self._unsubscribe_local()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._live = False

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``run_id`` gets a new event. Subscribe *before*
        reading the events, clear it before each read: no wake-up is lost."""
        self.start()
        signal = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(signal)
        try:
            yield signal
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(signal)
                if not waiters:
                    del self._waiters[run_id]

    def _wake(self, run_id: str) -> None:
        for signal in self._waiters.get(run_id, ()):
            signal.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for signal in waiters:
                signal.set()

    def _from_writer_thread(self, run_ids: frozenset[str]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            for run_id in run_ids:
                loop.call_soon_threadsafe(self._wake, run_id)
        except RuntimeError:  # the loop closed (the app shut down): nobody is following
            return

    def _listening(self) -> None:
        self._live = True
        self._failures = 0
        self._wake_all()  # anything written while we were not listening

    async def _listen(self, conninfo: str) -> None:
        while True:
            try:
                async for run_id in run_notify.listen_run_events(conninfo, self._listening):
                    self._wake(run_id)
                raise ConnectionError("the LISTEN connection closed")
            except asyncio.CancelledError:
                raise
            except Exception:
                self._live = False
                self._wake_all()  # streams re-read and fall back to polling
                delay = RECONNECT_BACKOFF[min(self._failures, len(RECONNECT_BACKOFF) - 1)]
                self._failures += 1
                log.warning(
                    "run events: LISTEN connection lost; streams poll every %.1f s, "
                    "reconnecting in %.1f s",
                    FALLBACK_POLL_SECONDS,
                    delay,
                    exc_info=True,
                )
                await asyncio.sleep(delay)
