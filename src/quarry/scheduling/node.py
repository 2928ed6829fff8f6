"""Everything a driver node runs for scheduling, started and stopped as one.

A node with ``topology.global_driver`` on runs the driver thread and two small
queue workers: one draining monitor checks (``quarry.monitors``), one draining
alert deliveries (``quarry.alerts``). Separate workers, so a webhook that hangs
until its timeout never delays a monitor check, and neither ever delays a tick.
"""

from __future__ import annotations

import logging
import threading

from quarry.runtime.queue.worker import Worker
from quarry.runtime.services import Services
from quarry.scheduling.alerts import DELIVERY_QUEUE
from quarry.scheduling.delivery import Deliverer
from quarry.scheduling.driver import Driver
from quarry.scheduling.monitors import MonitorChecker
from quarry.scheduling.ticks import MONITOR_QUEUE

log = logging.getLogger(__name__)


class SchedulingNode:
    def __init__(self, svc: Services) -> None:
        engine, queue, settings = svc.engine, svc.queue, svc.settings
        self.driver = Driver(
            svc,
            interval=settings.schedule_tick_seconds,
            catchup=settings.schedule_catchup_seconds,
            purge_after=settings.queue_purge_after_seconds,
        )
        self.checker = MonitorChecker(
            svc,
            svc.paths.cache_dir,
            delivery_attempts=settings.alert_delivery_attempts,
        )
        self.deliverer = Deliverer(engine, timeout=settings.alert_delivery_timeout)
        # The driver reaps; these workers need no reaper of their own.
        self.workers = [
            Worker(queue, self.checker.handle, queues=(MONITOR_QUEUE,), reap_interval=None),
            Worker(queue, self.deliverer.handle, queues=(DELIVERY_QUEUE,), reap_interval=None),
        ]
        self._threads = [
            threading.Thread(target=w.run, name=f"quarry-scheduling-{i}", daemon=True)
            for i, w in enumerate(self.workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        for worker in self.workers:
            worker.wait_ready()
        self.driver.start()
        log.info("global driver started (tick %.3gs)", self.driver.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.driver.stop(timeout)
        for worker in self.workers:
            worker.request_stop()
        for thread in self._threads:
            thread.join(timeout)
        self.deliverer.close()


def build_scheduling_node(svc: Services) -> SchedulingNode:
    """The node's scheduling parts, configured from the settings tree."""
    return SchedulingNode(svc)
