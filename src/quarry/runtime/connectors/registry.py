"""The databases of one run: opened on first use by name, closed when the run ends."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from quarry.core.errors import QuarryError
from quarry.definitions.models.config import DuckDbDatabase, PostgresDatabase
from quarry.runtime.connectors.base import Connector, ConnectorError
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.duckdb import DuckDbConnector
from quarry.runtime.connectors.postgres import PostgresConnector, connection_info
from quarry.runtime.source import RevisionSource, normalise_path

SecretLookup = Callable[[str], str | None]


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
    ) -> None:
        self.source = source
        self.cache = cache
        self.secrets = secrets
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
        if isinstance(config, DuckDbDatabase):
            return self._duckdb(config)
        if isinstance(config, PostgresDatabase):
            return PostgresConnector(name, connection_info(config, self.secrets))
        raise ConnectorError(
            f"database {name!r} is of type {config.type!r}, which is not supported yet",
            database=name,
        )

    def _duckdb(self, config: DuckDbDatabase) -> DuckDbConnector:
        src = self.source
        if config.dataset is not None:
            folder = normalise_path(config.dataset)
            local = self.cache.dataset_folder(
                src.store, src.tenant_id, src.revision_id, folder, src.dataset_files(folder)
            )
            return DuckDbConnector(config.name, search_path=local)
        if config.path is not None:
            shipped = _revision_file(src, config.path)
            if shipped is not None:
                blob = self.cache.ensure_blob(src.store, src.tenant_id, shipped)
                # The cached blob is shared: a database shipped in a revision is read-only.
                return DuckDbConnector(config.name, database=blob, read_only=True)
            if Path(config.path).is_absolute():
                return DuckDbConnector(config.name, database=Path(config.path))
            raise ConnectorError(
                f"database {config.name!r}: {config.path!r} is not part of the revision "
                "(put it under a dataset folder, or use an absolute path on the worker)",
                database=config.name,
            )
        raise ConnectorError(
            f"database {config.name!r}: DuckLake is not supported yet", database=config.name
        )

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for connector in opened:
            connector.close()


def _revision_file(source: RevisionSource, path: str) -> str | None:
    try:
        wanted = normalise_path(path)
    except ValueError:
        return None
    return next((row.blob_hash for row in source.files() if row.path == wanted), None)
