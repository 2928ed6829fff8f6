"""The one lifecycle every part of a process follows: ``async start()``, ``async stop()``.

Most parts are blocking (threads, a ``ThreadingHTTPServer``, the Factory's start-up
pass): :class:`OnThread` runs their ``start``/``stop`` on a worker thread, so an ASGI
event loop keeps serving while they wait. The parts that live on the event loop (the
IDE proxy pool, the run event hub) are wrapped by :class:`OnLoop`. The run workers
get their own component, :class:`RunWorkers`, which keeps what a ``quarry worker``
process reports when it ends (each worker's stats, an error that ended one).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from quarry.runtime.queue.worker import Worker, WorkerStats

log = logging.getLogger(__name__)


class Component(Protocol):
    """A part of a process the :class:`~quarry.node.node.Node` starts and stops."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Blocking(Protocol):
    """A part whose ``start``/``stop`` block (threads, sockets, joins)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class OnThread:
    """A :class:`Blocking` part as a :class:`Component`: ``start``/``stop`` on a thread."""

    def __init__(self, name: str, part: Blocking) -> None:
        self._name = name
        self.part = part

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await asyncio.to_thread(self.part.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.part.stop)


async def _nothing() -> None:
    return None


class OnLoop:
    """A part that lives on the event loop (its ``start``/``stop`` are coroutines)."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]] | None,
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self._name = name
        self._start = start or _nothing
        self._stop = stop

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await self._start()

    async def stop(self) -> None:
        await self._stop()


class RunWorkers:
    """Queue workers, each on a thread; ``start`` returns once each is listening,
    ``stop`` asks them to stop and waits up to ``stop_timeout`` for each.

    ``on_exit`` is called when a worker's loop ends without being asked to (an
    error): a ``quarry worker`` process then stops, as it did when the worker loop
    ran on its main thread; ``stop`` re-raises the error."""

    name = "run-workers"

    def __init__(
        self,
        workers: Sequence[Worker],
        *,
        stop_timeout: float | None = 30.0,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.workers = list(workers)
        self.stop_timeout = stop_timeout
        self.on_exit = on_exit
        self.stats: list[WorkerStats] = []
        self.error: BaseException | None = None
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"quarry-worker-{i}", daemon=True)
            for i, w in enumerate(self.workers)
        ]

    def _run(self, worker: Worker) -> None:
        try:
            self.stats.append(worker.run())
        except BaseException as exc:
            log.exception("worker %s stopped on an error", worker.owner)
            self.error = exc
        finally:
            if not self._stopping and self.on_exit is not None:
                self.on_exit()

    def _start(self) -> None:
        for thread in self._threads:
            thread.start()
        for worker in self.workers:
            worker.wait_ready()
        log.info("started %d in-process worker(s)", len(self.workers))

    def _stop(self) -> None:
        self._stopping = True
        for worker in self.workers:
            worker.request_stop()
        for thread in self._threads:
            thread.join(self.stop_timeout)
        if self.error is not None:
            raise self.error

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)
