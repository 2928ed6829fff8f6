"""What runs in a Quarry process, and in what order it starts and stops.

A :class:`Node` holds the process's :class:`~quarry.runtime.services.Services` and
the parts its role runs (``quarry.node.roles`` decides which, from the topology and
the command). Every part is a :class:`~quarry.node.components.Component`; they
**start in this order and stop in the reverse order**:

1. ``run-events``     the run event hub (ASGI processes): wakes run event streams.
                      Starts lazily on the first stream; stops last.
2. ``ide-proxy``      the connection pool to the Factory (serve replicas).
3. ``worker-http``    ``/healthz``, ``/readyz``, ``/metrics`` of ``quarry worker``
                      (with a port): probes see the process from boot to exit.
4. ``scheduling``     the global driver and its monitor and alert workers
                      (``topology.global_driver``; ``quarry driver``).
5. ``run-workers``    the queue workers executing runs (in process on ide/all, the
                      main work of ``quarry worker``). Stopped before the driver and
                      the health server, so a draining worker stays observable.
6. ``scale-to-zero``  startup recovery and the self keep-alive (ASGI processes);
                      needs the run workers (the drain loop it kicks).
7. ``factory``        the Factory's start-up clone-and-compile pass and its
                      auto-compiler (ide/all only); stopped first, so no compile or
                      draft run starts while the rest goes down.

The HTTP server itself is not a component: uvicorn runs the ASGI application and its
lifespan starts and stops the node (``quarry.api.app``); a headless process
(``quarry worker``, ``quarry driver``) runs the node with :meth:`Node.run` until
SIGTERM or SIGINT. Services are opened before the node and closed by whoever opened
them: a node never disposes of the engine.

This module must not import the Factory (the serve side imports it through
``quarry.api.deps``); ``factory`` is typed by the blocking start/stop it needs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from quarry.fleet.proxy import IdeUpstream
from quarry.fleet.scale_to_zero import ScaleToZero
from quarry.fleet.worker_http import WorkerHttp
from quarry.node.components import Blocking, Component, OnLoop, OnThread, RunWorkers
from quarry.runtime.connectors.pool import close_all_pools
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.services import Services
from quarry.scheduling.node import SchedulingNode

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Node:
    """One process's services and the parts it runs (each optional: the role decides)."""

    services: Services
    run_events: RunEventHub | None = None
    ide_proxy: IdeUpstream | None = None
    worker_http: WorkerHttp | None = None
    scheduling: SchedulingNode | None = None
    run_workers: RunWorkers | None = None
    scale_to_zero: ScaleToZero | None = None
    factory: Blocking | None = None
    _started: list[Component] = field(default_factory=list, init=False, repr=False)
    _stop_requested: asyncio.Event | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    def components(self) -> list[Component]:
        """The parts this node runs, in start order (see the module docstring)."""
        parts: list[Component] = []
        if self.run_events is not None:
            parts.append(OnLoop("run-events", None, self.run_events.close))
        if self.ide_proxy is not None:
            parts.append(OnLoop("ide-proxy", self.ide_proxy.start, self.ide_proxy.close))
        if self.worker_http is not None:
            parts.append(OnThread("worker-http", self.worker_http))
        if self.scheduling is not None:
            parts.append(OnThread("scheduling", self.scheduling))
        if self.run_workers is not None:
            parts.append(self.run_workers)
        if self.scale_to_zero is not None:
            parts.append(OnThread("scale-to-zero", self.scale_to_zero))
        if self.factory is not None:
            parts.append(OnThread("factory", self.factory))
        return parts

    async def start(self) -> None:
        """Start every part in order; if one fails, stop those already started (in
        reverse) and raise."""
        for part in self.components():
            log.debug("starting %s", part.name)
            try:
                await part.start()
            except BaseException:
                await self.stop()
                raise
            self._started.append(part)

    async def stop(self) -> None:
        """Stop the started parts in reverse order. Every part gets its stop even if
        an earlier one failed; the first failure is raised at the end."""
        failure: BaseException | None = None
        while self._started:
            part = self._started.pop()
            log.debug("stopping %s", part.name)
            try:
                await part.stop()
            except BaseException as exc:
                log.exception("stopping %s failed", part.name)
                failure = failure or exc
        # No run of this node holds a warehouse connection any more: end the idle
        # pooled sessions now (a later checkout would open new ones), not at exit only.
        await asyncio.to_thread(close_all_pools)
        if failure is not None:
            raise failure

    # -- a headless process ---------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`run` to stop the node (from any thread)."""
        loop, event = self._loop, self._stop_requested
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Start, wait for SIGTERM/SIGINT (or :meth:`request_stop`), stop: the main
        loop of ``quarry worker`` and ``quarry driver``."""
        asyncio.run(self._run(on_started))

    async def _run(self, on_started: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self._loop, self._stop_requested = loop, stop

        def on_signal(signum: int) -> None:
            log.info("signal %d: stopping gracefully", signum)
            stop.set()

        signals = (signal.SIGTERM, signal.SIGINT)
        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await self.start()
            try:
                if on_started is not None:
                    on_started()
                await stop.wait()
            finally:
                await self.stop()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            self._loop = self._stop_requested = None
