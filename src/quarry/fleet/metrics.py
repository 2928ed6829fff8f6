"""``GET /metrics``: the process's instruments plus queue figures read at scrape time.

Queue depth comes from the database, not from in-process counters, so every replica
(and every worker) reports the same, fleet-wide truth; a short cache keeps a scrape
storm from becoming a query storm. ``quarry_queue_active_tasks`` (queued + running)
is the autoscaling signal: scaling on queued alone would remove workers that are
still busy (see docs/autoscaling.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quarry.core.metrics import REGISTRY
from quarry.runtime.queue import QueueCount, TaskQueue
from quarry.store.queue import oldest_age_seconds

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QueueCollector(Collector):
    """Queue depth by state and tenant, oldest queued age, active (queued+running)."""

    def __init__(self, queue: TaskQueue, cache_seconds: float = 2.0) -> None:
        self.queue = queue
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._counts: list[QueueCount] = []

    def _read(self) -> list[QueueCount]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.cache_seconds:
                self._counts = self.queue.counts()
                self._at = now
            return self._counts

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        depth = GaugeMetricFamily(
            "quarry_queue_tasks",
            "Tasks in the queue by state and tenant.",
            labels=["state", "tenant"],
        )
        per: dict[tuple[str, str], int] = {}
        for c in counts:
            per[(c.state, c.tenant_id)] = per.get((c.state, c.tenant_id), 0) + c.count
        for (state, tenant), n in sorted(per.items()):
            depth.add_metric([state, tenant], n)
        yield depth
        yield GaugeMetricFamily(
            "quarry_queue_oldest_queued_age_seconds",
            "Age of the oldest queued task (0 when none is queued).",
            value=oldest_age_seconds(counts, "queued"),
        )
        yield GaugeMetricFamily(
            "quarry_queue_active_tasks",
            "Queued plus running tasks: the worker autoscaling signal.",
            value=sum(c.count for c in counts if c.state in ("queued", "running")),
        )


def render_metrics(extra: Iterable[Collector] = ()) -> bytes:
    """The exposition text: the process's instruments, then ``extra`` collectors
    (blocking: call from a thread, the queue collector reads the database)."""
    body = generate_latest(REGISTRY)
    own = CollectorRegistry(auto_describe=False)
    for collector in extra:
        own.register(collector)
    return body + generate_latest(own)
