"""The databases of one run: opened on first use by name, closed when the run ends.

Everything a workspace names is opened under the process's :class:`ConnectorPolicy`
(``docs/security.md``): DuckDB sandboxed to the run's private folder, warehouses
checked by host and by server identity, ``*_var`` secrets resolved only when allowed.
No driver is imported here: each connector module is imported when a run first
opens a database of its kind (``kinds.py``); see ``docs/databases.md``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quarry.core.errors import QuarryError
from quarry.definitions.models.config import (
    AirhouseDatabase,
    BigQueryDatabase,
    ClickHouseDatabase,
    DomoDatabase,
    DuckDbDatabase,
    MysqlDatabase,
    PostgresDatabase,
    RedshiftDatabase,
    SnowflakeDatabase,
)
from quarry.runtime.connectors.base import Connector, ConnectorError
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.isolated import ConnectorHost, IsolatedConnector
from quarry.runtime.connectors.kinds import open_connector
from quarry.runtime.connectors.policy import ConnectorPolicy, current_policy
from quarry.runtime.connectors.sandbox import RunSandbox
from quarry.runtime.connectors.secrets import SecretLookup, SecretResolver
from quarry.runtime.connectors.settings import (
    bigquery_settings,
    clickhouse_settings,
    connection_info,
    domo_settings,
    mysql_settings,
    snowflake_settings,
)
from quarry.runtime.connectors.support import unsupported_reason
from quarry.runtime.source import RevisionSource, normalise_path


class UnknownDatabase(QuarryError):
    status_code = 422
    code = "unknown_database"


class Connections:
    """Per-run registry; thread-safe, so concurrent loop iterations share it."""

    def __init__(
        self,
        source: RevisionSource,
        cache: BlobCache,
        *,
        secrets: SecretLookup = os.environ.get,
        policy: ConnectorPolicy | None = None,
    ) -> None:
        self.source = source
        self.cache = cache
        self.policy = policy or current_policy()
        self.secrets = SecretResolver(self.policy, source.tenant_id, secrets)
        self.sandbox = RunSandbox(cache.root / "runs")
        # QUARRY_TENANT_SQL_ISOLATION=process: every database of the run is opened in
        # one child process without the fleet's secrets (isolated.py), on first use.
        self.host: ConnectorHost | None = None
        if self.policy.tenant_sql_isolation == "process":
            self.host = ConnectorHost(self.policy, lambda: self.sandbox.root)
        self._open: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Connector:
        with self._lock:
            found = self._open.get(name)
            if found is None:
                found = self._open[name] = self._connect(name)
            return found

    def _connect(self, name: str) -> Connector:
        config = next((db for db in self.source.config.databases if db.name == name), None)
        if config is None:
            known = ", ".join(sorted(db.name for db in self.source.config.databases))
            raise UnknownDatabase(
                f"no database named {name!r} in config.yml (known: {known or 'none'})",
                database=name,
            )
        refused = unsupported_reason(config)
        if refused is not None:
            raise ConnectorError(
                f"database {name!r} is of type {config.type!r}: {refused}",
                database=name,
                type=config.type,
            )
        if isinstance(config, DuckDbDatabase):
            return self._connector("duckdb", name, "duckdb", self._duckdb_args(config))
        if isinstance(config, PostgresDatabase | RedshiftDatabase | AirhouseDatabase):
            options = _POSTGRES_WIRE[config.type]
            settings = connection_info(config, self.secrets)
            args = {"settings": settings, "options": options}
            return self._connector("postgres", name, str(options["dialect"]), args)
        if isinstance(config, MysqlDatabase):
            args = {"settings": mysql_settings(config, self.secrets)}
            return self._connector("mysql", name, "mysql", args)
        if isinstance(config, ClickHouseDatabase):
            args = {"settings": clickhouse_settings(config, self.secrets)}
            return self._connector("clickhouse", name, "clickhouse", args)
        if isinstance(config, BigQueryDatabase):
            settings = bigquery_settings(config, self.secrets, self._reader(name, "key_path"))
            return self._connector("bigquery", name, "bigquery", {"settings": settings})
        if isinstance(config, SnowflakeDatabase):
            reader = self._reader(name, "private_key_path")
            settings = snowflake_settings(config, self.secrets, reader)
            return self._connector("snowflake", name, "snowflake", {"settings": settings})
        if isinstance(config, DomoDatabase):
            settings = domo_settings(config, self.secrets)
            return self._connector("domo", name, "mysql", {"settings": settings})
        raise ConnectorError(
            f"database {name!r} is of type {config.type!r}, which is not supported yet",
            database=name,
            type=config.type,
        )

    def _connector(self, kind: str, name: str, dialect: str, args: dict[str, Any]) -> Connector:
        """The connector here, or in the run's connector host (process isolation).

        Error messages are redacted here, where the resolved secrets are known."""
        redact = self.secrets.redact
        if self.host is not None:
            return IsolatedConnector(self.host, name, dialect, kind, args, redact=redact)
        return open_connector(kind, name, args, policy=self.policy, redact=redact)

    def _reader(self, database: str, field: str) -> Callable[[str], bytes]:
        """Reads a file a database entry names (a key file): one of the revision, or
        an absolute path where the operator allows it (as for DuckDB's ``path``)."""

        def read(path: str) -> bytes:
            src = self.source
            shipped = _revision_file(src, path)
            if shipped is not None:
                return self.cache.ensure_blob(src.store, src.tenant_id, shipped).read_bytes()
            local = Path(path)
            allowed = self.policy.absolute_duckdb_paths or any(
                local.resolve().is_relative_to(root) for root in self.policy.duckdb_allowed_paths
            )
            if not local.is_absolute() or not allowed:
                raise ConnectorError(
                    f"database {database!r}: {field} names a file that is not part of the "
                    "revision (put it in the workspace, or use an absolute path the operator "
                    "allows)",
                    database=database,
                    field=field,
                )
            try:
                return local.read_bytes()
            except OSError as exc:
                raise ConnectorError(
                    f"database {database!r}: cannot read the {field} file: {exc.strerror}",
                    database=database,
                    field=field,
                ) from None

        return read

    def _duckdb_args(self, config: DuckDbDatabase) -> dict[str, Any]:
        """The keyword arguments of :class:`DuckDbConnector` besides name and policy."""
        src = self.source
        temp = self.sandbox.temp_dir(config.name)
        if config.dataset is not None:
            folder = normalise_path(config.dataset)
            local = self.cache.dataset_folder(
                src.store, src.tenant_id, src.revision_id, folder, src.dataset_files(folder)
            )
            # The cached folder is shared by every run (and tenant) of the revision.
            private = self.sandbox.snapshot(local)
            return {"temp_dir": temp, "search_path": private}
        if config.path is not None:
            alias = _alias(config.path)
            shipped = _revision_file(src, config.path)
            if shipped is not None:
                blob = self.cache.ensure_blob(src.store, src.tenant_id, shipped)
                # The cached blob is shared: a database shipped in a revision is read-only.
                return {"temp_dir": temp, "database": blob, "alias": alias, "read_only": True}
            outside = self._outside_path(config)
            return {"temp_dir": temp, "database": outside, "alias": alias}
        raise ConnectorError(
            f"database {config.name!r}: DuckLake is not supported yet", database=config.name
        )

    def _outside_path(self, config: DuckDbDatabase) -> Path:
        """A ``path:`` that is not part of the revision: a file on this machine, allowed
        in local mode or under an operator's ``QUARRY_DUCKDB_ALLOWED_PATHS``."""
        assert config.path is not None
        path = Path(config.path)
        if not path.is_absolute():
            raise ConnectorError(
                f"database {config.name!r}: path {config.path!r} is not part of the revision "
                "(put the file in the workspace, or use an absolute path the operator allows)",
                database=config.name,
                field="path",
            )
        if self.policy.absolute_duckdb_paths:
            return path
        real = path.resolve()
        if any(
            real == root or real.is_relative_to(root) for root in self.policy.duckdb_allowed_paths
        ):
            return real
        raise ConnectorError(
            f"database {config.name!r}: path {config.path!r} is outside the workspace and "
            "not on the operator's list (QUARRY_DUCKDB_ALLOWED_PATHS)",
            database=config.name,
            field="path",
        )

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        try:
            for connector in opened:
                connector.close()
            if self.host is not None:
                self.host.close()
        finally:
            self.sandbox.close()


# Postgres-wire databases: the SQL they speak and Oxy's default port.
_POSTGRES_WIRE: dict[str, dict[str, Any]] = {
    "postgres": {"dialect": "postgres", "default_port": 5432},
    "redshift": {"dialect": "postgres", "default_port": 5439},
    "airhouse": {"dialect": "duckdb", "default_port": 5445},
}


def _revision_file(source: RevisionSource, path: str) -> str | None:
    try:
        wanted = normalise_path(path)
    except ValueError:
        return None
    return next((row.blob_hash for row in source.files() if row.path == wanted), None)


def _alias(path: str) -> str:
    """The catalog name of an attached database file: its name without extension."""
    stem = Path(path).stem
    return stem if stem and stem.isidentifier() else "db"
