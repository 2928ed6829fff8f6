"""What one process runs for scale-to-zero (docs/scale-to-zero.md): startup recovery,
triggered by the first request, and the self keep-alive.

A :class:`~quarry.node.node.Node` component: built with the process's run workers
(the drain loop of the Factory is the one a write request kicks) and started after
them. The HTTP side — ``GET /keepalive`` and the middleware that calls
:meth:`ScaleToZero.on_request` and :meth:`ScaleToZero.kick` — lives in
``quarry.api.fleet.keepalive``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from quarry.fleet.keepalive import SelfKeepAlive, self_keepalive
from quarry.runtime.queue.drain import DrainingWorker
from quarry.runtime.queue.recovery import StartupRecovery
from quarry.runtime.queue.worker import Worker
from quarry.runtime.services import Services

log = logging.getLogger(__name__)


class ScaleToZero:
    """Recovery on the first request, the drain kick of write requests, and the self
    keep-alive; ``start`` and ``stop`` are the node's."""

    name = "scale-to-zero"

    def __init__(self, svc: Services, workers: Sequence[Worker] = ()) -> None:
        self.svc = svc
        self.workers = list(workers)
        self.worker: DrainingWorker | None = None
        self.recovery: StartupRecovery | None = None
        self.keepalive: SelfKeepAlive | None = None

    def start(self) -> None:
        settings = self.svc.settings
        self.worker = next((w for w in self.workers if isinstance(w, DrainingWorker)), None)
        if self.worker is not None:
            self.recovery = StartupRecovery(
                self.svc.queue, self.svc.holds, self.worker.kick, own_owner=self.worker.owner
            )
        self.keepalive = self_keepalive(
            self.svc.holds,
            settings.self_url,
            min_replicas=settings.min_replicas,
            hold_seconds=settings.keepalive_hold_seconds,
            max_hold_seconds=settings.keepalive_max_hold_seconds,
        )
        if self.keepalive is not None:
            self.keepalive.start()
        else:
            log.info(
                "keep-alive dormant (%s)",
                "QUARRY_MIN_REPLICAS>=1" if settings.self_url else "QUARRY_SELF_URL unset",
            )

    def stop(self) -> None:
        if self.recovery is not None:
            self.recovery.stop()
        if self.keepalive is not None:
            self.keepalive.stop()

    def on_request(self) -> None:
        if self.recovery is not None and not self.recovery.triggered:
            self.recovery.trigger()

    def kick(self) -> None:
        if self.worker is not None:
            self.worker.kick("request")
