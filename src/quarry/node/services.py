"""Open what a process holds — the only place that connects to the state database,
opens the queue, the object store and the catalog, and decides the local folders.

Every process (``quarry serve``, ``worker``, ``driver``, ``run``, the operator
commands, tests) gets its :class:`~quarry.runtime.services.Services` from
:func:`build_services`; the components that run on it are assembled by
:mod:`quarry.node.roles`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from quarry.agents.tasks import install as install_agent_tasks
from quarry.catalog.reader import Catalog
from quarry.core.errors import ConfigurationError
from quarry.core.settings import Role, Settings
from quarry.core.topology import derive_topology
from quarry.node.paths import state_paths
from quarry.runtime.connectors.policy import ConnectorPolicy, install_policy
from quarry.runtime.queue import Task, open_queue
from quarry.runtime.queue.caps import queued_cap
from quarry.runtime.queue.reaper import on_task_ended
from quarry.runtime.runs.service import end_abandoned_runs
from quarry.runtime.services import Services, StatePaths
from quarry.store.db import Engine, create_state_engine, is_sqlite
from quarry.store.migrate import prepare_schema
from quarry.store.objects import open_object_store
from quarry.store.runs import run_kinds

if TYPE_CHECKING:
    from quarry.runtime.queue.worker import Worker

log = logging.getLogger(__name__)

__all__ = ["Services", "StatePaths", "build_run_worker", "build_services"]

# Seconds a connection attempt to the read replica may take before the read falls
# back to the primary.
REPLICA_CONNECT_TIMEOUT = 2


def build_services(settings: Settings) -> Services:
    """Connect, migrate (or check) the schema and open the object store."""
    if settings.database_url is None or settings.blob_url is None:
        raise ValueError("settings need database_url and blob_url (call with_local_defaults)")
    if settings.role in {Role.SERVE, Role.WORKER} and is_sqlite(settings.database_url):
        raise ConfigurationError(
            f"role {settings.role.value!r} needs a shared PostgreSQL database "
            "(QUARRY_DATABASE_URL=postgresql://...); SQLite serves a single local process only"
        )
    topology = derive_topology(settings)
    log.info("topology: %s", topology.describe())
    replica = _replica_engine(settings)  # refuses a bad URL before anything is migrated
    engine = create_state_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    prepare_schema(engine, skip_migrations=settings.skip_migrations)
    # What workspace code may reach from this process (docs/security.md).
    install_policy(ConnectorPolicy.from_settings(settings, engine))
    store = open_object_store(settings.blob_url)
    catalog = Catalog(
        engine,
        store,
        current_ttl=settings.revision_cache_ttl,
        cache_size=settings.definition_cache_size,
    )
    queue = open_queue(engine, enqueue_guard=queued_cap(settings.queue_max_queued_per_tenant))
    install_agent_tasks()  # ``agent`` steps run through quarry.agents in this process
    # A run whose last worker died ends when the reaper fails (or cancels) its task.
    on_task_ended(end_abandoned_runs)
    return Services(
        settings,
        topology,
        engine,
        store,
        catalog,
        queue,
        state_paths(settings),
        replica_engine=replica,
    )


def _replica_engine(settings: Settings) -> Engine | None:
    """The read replica's engine (``QUARRY_DATABASE_READ_URL``), or None. It is never
    migrated (a streaming replica replays the primary's schema) and connects lazily,
    so a process that never takes a lagging read never opens a connection to it."""
    url = settings.database_read_url
    if url is None:
        return None
    assert settings.database_url is not None
    if is_sqlite(url) or is_sqlite(settings.database_url):
        raise ConfigurationError(
            "QUARRY_DATABASE_READ_URL names a PostgreSQL read replica of a PostgreSQL "
            "QUARRY_DATABASE_URL; SQLite has no replicas"
        )
    return create_state_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        connect_timeout=REPLICA_CONNECT_TIMEOUT,
    )


def build_run_worker(svc: Services) -> Worker:
    """The queue worker that executes runs, configured from the settings tree. On the
    Factory (roles ide and all) it drains under keep-alive holds; elsewhere, with
    ``worker_batch`` above 1, the batched worker; else it runs up to
    ``agent_turn_slots`` agent turns at once (a workflow run alone, as before).

    The worker classes are imported here: ``quarry run`` and the operator commands
    build services but never a queue worker."""
    from quarry.runtime.queue.batch import BatchWorker
    from quarry.runtime.queue.concurrent import ConcurrentWorker
    from quarry.runtime.runs.executor import RunLimits
    from quarry.runtime.runs.workers import build_worker

    holds = svc.holds if svc.topology.serves_ide_routes else None
    worker = build_worker(
        svc,
        lease_seconds=svc.settings.worker_lease_seconds,
        shutdown_grace=svc.settings.worker_shutdown_grace,
        holds=holds,
        limits=RunLimits.from_settings(svc.settings),
    )
    if holds is not None:
        return worker
    if svc.settings.worker_batch > 1:
        # Opt-in, for short runs (docs/queue.md "Batched workers"): one at a time.
        return BatchWorker(
            svc.queue,
            worker.handler,
            batch_size=svc.settings.worker_batch,
            lease_seconds=svc.settings.worker_lease_seconds,
            shutdown_grace=svc.settings.worker_shutdown_grace,
        )
    if svc.settings.agent_turn_slots <= 1:
        return worker
    return ConcurrentWorker(
        svc.queue,
        worker.handler,
        slots=svc.settings.agent_turn_slots,
        lights=lambda tasks: _agent_turns(svc, tasks),
        lease_seconds=svc.settings.worker_lease_seconds,
        shutdown_grace=svc.settings.worker_shutdown_grace,
    )


def _agent_turns(svc: Services, tasks: list[Task]) -> list[bool]:
    """Whether the run of each of ``tasks`` is a thread turn (light: it waits on a
    model), for a whole claimed group in one query."""
    run_ids = [
        str(task.payload["run_id"])
        if isinstance(task.payload, dict) and task.payload.get("run_id") is not None
        else None
        for task in tasks
    ]
    wanted = [run_id for run_id in run_ids if run_id is not None]
    if not wanted:
        return [False] * len(tasks)
    with svc.engine.connect() as conn:
        kinds = run_kinds(conn, wanted)
    return [run_id is not None and kinds.get(run_id) == "agent" for run_id in run_ids]
