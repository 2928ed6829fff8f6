"""Executing a monitor check: a queue task with its own handler (not a run).

Why a task and not a run: a check is one SQL statement and a comparison, with no
steps to checkpoint, exports or events to stream; a run's machinery would only add
rows. The driver queues ``monitor_check`` tasks on the ``quarry.monitors`` queue (in
the transaction of the fire); a scheduling worker on every driver node drains that
queue, so a slow query delays only other checks, never the driver's ticks.
The query runs against the monitor's revision through the same connectors as runs
(``config.yml`` databases, secrets from the environment).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from quarry.catalog.reader import Catalog
from quarry.core.clock import utcnow
from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.queue import Task, TaskQueue
from quarry.runtime.source import RevisionSource
from quarry.scheduling.alerts import Transition, record_check
from quarry.store import schedules as scheduleq
from quarry.store import workspaces as wq
from quarry.store.db import Engine

log = logging.getLogger(__name__)


def first_value(table: Any, column: str | None) -> Any:
    """The checked value: the first row's ``column`` (default: its first column)."""
    if table.num_rows == 0:
        return None
    name = column if column is not None else table.column_names[0]
    if name not in table.column_names:
        raise ValueError(f"the monitor query returned no column {name!r} ({table.column_names})")
    return table.column(name)[0].as_py()


class MonitorServices(Protocol):
    """What checking monitors needs of the process (a
    :class:`~quarry.runtime.services.Services` is one): the state database, the
    queue deliveries go to, the catalog the monitor's database is read from."""

    @property
    def engine(self) -> Engine: ...
    @property
    def queue(self) -> TaskQueue: ...
    @property
    def catalog(self) -> Catalog: ...


class MonitorChecker:
    def __init__(
        self,
        svc: MonitorServices,
        cache_dir: Path,
        *,
        delivery_attempts: int = 5,
    ) -> None:
        self.engine = svc.engine
        self.queue = svc.queue
        self.catalog = svc.catalog
        self.cache = BlobCache(cache_dir)
        self.delivery_attempts = delivery_attempts

    def handle(self, task: Task) -> object:
        sid = str(task.payload["schedule_id"])
        with self.engine.connect() as conn:
            monitor = scheduleq.get_schedule(conn, sid)
            if monitor is None:
                return {"skipped": "monitor removed"}
            workspace = wq.get_workspace_by_id(conn, monitor.workspace_id)
        value = self.query(workspace, monitor)
        transition = self.record(monitor, value)
        return {"state": transition.state, "event_id": transition.event_id}

    def query(self, workspace: wq.WorkspaceRow, monitor: Any) -> Any:
        body = json.loads(monitor.body)
        source = RevisionSource(self.catalog, workspace, monitor.revision_id)
        connections = Connections(source, self.cache)
        try:
            table = connections.get(body["query"]["database"]).query(BoundSql(body["query"]["sql"]))
        finally:
            connections.close()
        return first_value(table, body["query"].get("column"))

    def record(self, monitor: Any, value: Any) -> Transition:
        with self.engine.begin() as conn:
            transition = record_check(
                conn,
                self.queue,
                monitor,
                value,
                now=utcnow(),
                delivery_attempts=self.delivery_attempts,
            )
        if transition.event_id is not None:
            log.info(
                "monitor %s is now %s (%d deliveries queued)",
                monitor.name,
                transition.state,
                transition.deliveries,
            )
        return transition
