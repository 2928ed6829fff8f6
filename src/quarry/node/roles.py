"""Build the :class:`~quarry.node.node.Node` a command runs, from its services
(settings and topology) and the kind of process it is.

- ``Process.SERVER`` (``quarry serve``, ``quarry demo``, every ASGI application):
  what the topology says — the IDE proxy pool on serve replicas, in-process run
  workers and the global driver where enabled, scale-to-zero, and the Factory on
  ide/all (imported here, lazily: a serve replica never loads ``quarry.factory``).
- ``Process.WORKER`` (``quarry worker``): a run worker, the global driver when the
  topology says so, and the worker's HTTP server when ``QUARRY_WORKER_PORT`` is set.
- ``Process.DRIVER`` (``quarry driver``): the global driver alone.

``quarry fleet up`` runs no node of its own: it supervises child processes, each of
which is one of the above.
"""

from __future__ import annotations

from enum import Enum

from quarry import __version__
from quarry.fleet.metrics import QueueCollector
from quarry.fleet.proxy import ide_proxy
from quarry.fleet.scale_to_zero import ScaleToZero
from quarry.fleet.worker_http import WorkerHttp
from quarry.node.components import Blocking, RunWorkers
from quarry.node.node import Node
from quarry.node.services import build_run_worker
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.services import Services
from quarry.scheduling.node import build_scheduling_node
from quarry.store.db import ping


class Process(Enum):
    SERVER = "server"
    WORKER = "worker"
    DRIVER = "driver"


def build_node(svc: Services, process: Process = Process.SERVER) -> Node:
    if process is Process.SERVER:
        return _server(svc)
    if process is Process.WORKER:
        return _worker(svc)
    return Node(svc, scheduling=build_scheduling_node(svc))


def _server(svc: Services) -> Node:
    topology = svc.topology
    workers = RunWorkers([build_run_worker(svc)]) if topology.inprocess_workers else None
    return Node(
        svc,
        # One LISTEN connection (or local commit hook) wakes every run event stream.
        run_events=RunEventHub(svc.engine, poll_seconds=svc.settings.run_events_poll_seconds),
        # IdeOnly requests stream to the Factory (quarry.fleet.proxy).
        ide_proxy=ide_proxy(svc.settings) if topology.proxies_ide_routes else None,
        scheduling=build_scheduling_node(svc) if topology.global_driver else None,
        run_workers=workers,
        scale_to_zero=ScaleToZero(svc, workers.workers if workers is not None else []),
        factory=_factory(svc) if topology.serves_ide_routes else None,
    )


def _factory(svc: Services) -> Blocking:
    # Imported only here: a serve replica must never load the Factory package.
    from quarry.factory.service import Factory

    return Factory(svc)


def _worker(svc: Services) -> Node:
    node = Node(svc)
    node.run_workers = RunWorkers(
        [build_run_worker(svc)],
        stop_timeout=None,  # the worker's own shutdown grace bounds it
        on_exit=node.request_stop,
    )
    if svc.topology.global_driver:
        node.scheduling = build_scheduling_node(svc)
    if svc.settings.worker_port is not None:
        node.worker_http = _worker_http(svc, svc.settings.worker_port)
    return node


def _worker_http(svc: Services, port: int) -> WorkerHttp:
    """Health, readiness and metrics for the worker (docs/autoscaling.md)."""
    return WorkerHttp(
        svc.settings.host,
        port,
        health=lambda: {"status": "ok", "version": __version__, "role": "worker"},
        probes={"database": lambda: ping(svc.engine), "object_store": svc.store.check},
        collectors=[QueueCollector(svc.queue, svc.settings.metrics_cache_seconds)],
        metrics_token=svc.settings.metrics_token,
        unready_after=svc.settings.queue_unready_after_seconds,
    )
