"""What tenant-driven connections may reach: one policy per process, from the settings.

Workspace code (workflow SQL, app tasks, monitors) runs on workers and on the
Factory, next to Quarry's own state and secrets. The policy says what a
``config.yml`` database may touch there: which DuckDB files, which warehouse hosts,
which environment variables its ``*_var`` fields may name. See ``docs/security.md``.

Fleet mode (a PostgreSQL state database) is strict by default; local single-user
mode (SQLite) keeps the conveniences of a developer machine (loopback warehouses,
absolute DuckDB paths, every environment variable except Quarry's own).

The policy is installed once per process by ``build_services`` (as logging is
configured once), because connectors are opened deep inside run execution by code
that is handed a catalog and a cache, not the settings tree; a test that drives
:class:`~quarry.runtime.connectors.registry.Connections` directly passes its own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # imported where used: the connector host process loads this module
    from quarry.core.settings import Settings
    from quarry.store.db import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectorPolicy:
    """Limits on what a workspace's databases may reach; the defaults are fleet-strict."""

    fleet: bool = True
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2
    duckdb_max_temp_size: str = "10GB"
    duckdb_allowed_paths: tuple[Path, ...] = ()
    warehouse_allow: tuple[str, ...] = ()
    warehouse_deny: tuple[str, ...] = ()
    warehouse_allow_loopback: bool = False
    warehouse_allow_state_cluster: bool = False
    # Warehouse connections kept between runs (pool.py): per set of connection values.
    warehouse_pool_size: int = 8
    warehouse_pool_max_open: int = 0
    warehouse_pool_timeout: float = 30.0
    # Tenant id (or "*" for every tenant) -> environment variable names or globs.
    secret_env_allow: dict[str, tuple[str, ...]] | None = None
    # ``pg_control_system().system_identifier`` of the state database, if PostgreSQL.
    state_cluster: str | None = None
    # "process": tenant SQL runs in a child process without the fleet's secrets
    # (``isolated.py``); "inline": in this process, sandboxed only.
    tenant_sql_isolation: Literal["process", "inline"] = "inline"

    @property
    def absolute_duckdb_paths(self) -> bool:
        """Local mode lets a ``path:`` name any file of the single user's machine."""
        return not self.fleet

    @classmethod
    def local(cls) -> ConnectorPolicy:
        """Single-user mode: the person running Quarry is also its operator."""
        return cls(fleet=False, warehouse_allow_loopback=True)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> ConnectorPolicy:
        from quarry.core.settings import Role
        from quarry.store.db import is_sqlite
        from quarry.store.identity import state_cluster_identity

        fleet = settings.database_url is not None and not is_sqlite(settings.database_url)
        loopback = settings.warehouse_allow_loopback
        allow = settings.secret_env_allow
        state = None
        if engine is not None and engine.dialect.name == "postgresql":
            state = state_cluster_identity(engine)
            if state is None:
                log.warning(
                    "cannot read the state database's system_identifier: connectors are "
                    "checked against its host names only"
                )
        isolation = settings.tenant_sql_isolation
        if isolation is None:
            # The Factory (the roles serving IDE routes) holds every secret of the fleet.
            factory = settings.role in {Role.IDE, Role.ALL}
            isolation = "process" if fleet and factory else "inline"
        return cls(
            fleet=fleet,
            duckdb_memory_limit=settings.duckdb_memory_limit,
            duckdb_threads=settings.duckdb_threads,
            duckdb_max_temp_size=settings.duckdb_max_temp_size,
            duckdb_allowed_paths=tuple(p.resolve() for p in settings.duckdb_allowed_paths),
            warehouse_allow=tuple(settings.warehouse_allow),
            warehouse_deny=tuple(settings.warehouse_deny),
            warehouse_allow_loopback=(not fleet) if loopback is None else loopback,
            warehouse_allow_state_cluster=settings.warehouse_allow_state_cluster,
            warehouse_pool_size=settings.warehouse_pool_size,
            warehouse_pool_max_open=settings.warehouse_pool_max_open,
            warehouse_pool_timeout=settings.warehouse_pool_timeout_seconds,
            secret_env_allow=None if allow is None else {k: tuple(v) for k, v in allow.items()},
            state_cluster=state,
            tenant_sql_isolation=isolation,
        )


_installed: ConnectorPolicy | None = None
_lock = threading.Lock()


def install_policy(policy: ConnectorPolicy) -> None:
    """Make ``policy`` the one every later :class:`Connections` of this process uses."""
    global _installed
    with _lock:
        _installed = policy
    if not policy.fleet and policy.secret_env_allow is None:
        # DEBUG, not WARNING: every local command installs a policy, and the person
        # running it is the operator; `--verbose` shows it (docs/security.md says it).
        log.debug(
            "local mode: workspace *_var fields may name any environment variable of this "
            "process except Quarry's own (set QUARRY_SECRET_ENV_ALLOW to restrict them)"
        )


def current_policy() -> ConnectorPolicy:
    """The installed policy; fleet-strict when nothing was installed."""
    with _lock:
        return _installed if _installed is not None else ConnectorPolicy()
