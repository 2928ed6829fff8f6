"""What a running process holds, as one value lower layers may take.

:class:`Services` is built only by the composition root (:mod:`quarry.node.services`);
it is *defined* here, in ``quarry.runtime``, because the packages that use it —
``runtime`` itself (run workers), ``scheduling``, ``fleet``, ``agents``, ``factory`` —
all sit at or above ``runtime`` in the layer contract, and everything a ``Services``
holds (settings, topology, engine, object store, catalog, queue, holds) comes from
``runtime`` or below. Defining it in ``quarry.node`` (or ``quarry.api``, where it
used to live) would make every one of them import upwards; defining it in
``quarry.core`` would need the store and queue types under ``TYPE_CHECKING``, which
the import contract still counts as imports. So lower layers take one ``svc`` instead
of the ``(engine, queue, store, catalog)`` quartet, and never learn how it was built.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quarry.catalog.reader import Catalog
from quarry.core.holds import Holds
from quarry.core.settings import Settings
from quarry.core.topology import Topology
from quarry.runtime.queue import TaskQueue
from quarry.store.db import Connection, Engine, read_connection
from quarry.store.objects import ObjectStore


@dataclass(frozen=True)
class StatePaths:
    """The process's local folders, decided once (``quarry.node.paths.state_paths``):
    ``data_dir`` holds local state, ``cache_dir`` the connectors' and results' caches,
    ``workspaces_dir`` the Factory's working copies."""

    data_dir: Path
    cache_dir: Path
    workspaces_dir: Path


@dataclass
class Services:
    settings: Settings
    topology: Topology
    engine: Engine
    store: ObjectStore
    catalog: Catalog
    queue: TaskQueue
    paths: StatePaths
    # Keep-alive holds (docs/scale-to-zero.md): work that outlives a request — a
    # compile, a run, the drain loop — takes one with ``svc.holds.hold("compile")``.
    holds: Holds = field(default_factory=Holds)
    # A streaming read replica of ``engine`` (QUARRY_DATABASE_READ_URL), or None.
    replica_engine: Engine | None = None

    def replica_read(self) -> AbstractContextManager[Connection]:
        """A connection for a read that may lag the primary by the replica's replay
        lag: the replica when one is configured (and reachable), else the primary.
        Only listings a caller polls take it (docs/capacity.md, 'Read replicas'); a
        read of what the caller just wrote, the queue and the tokens stay on
        ``engine``."""
        return read_connection(self.replica_engine, self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self.replica_engine is not None:
            self.replica_engine.dispose()


def services_of(app_state: Any) -> Services:
    """The process's services, read from the one node ``create_app`` puts on its
    app's ``state`` (``app.state.node``): the accessor of the API's routes
    (``quarry.api.deps.services``) and of the web pages alike. It lives here because
    ``quarry.web`` sits below ``quarry.node`` and ``quarry.api`` in the layers and so
    may not name :class:`~quarry.node.node.Node`; it reads the node's ``services``
    and checks its type."""
    found = getattr(getattr(app_state, "node", None), "services", None)
    if not isinstance(found, Services):
        raise RuntimeError("the app has no node: build it with quarry.api.app.create_app(node)")
    return found
