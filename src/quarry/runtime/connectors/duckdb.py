"""DuckDB: a dataset folder queried by file name, or a database file.

One in-memory (or file) database per run; each statement runs on its own cursor,
so concurrent loop iterations never share a DuckDB connection object. For a
dataset, ``file_search_path`` points at the revision's folder in the local cache,
so ``FROM 'orders.csv'`` resolves without a working copy or a ``chdir``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError


class DuckDbConnector(Connector):
    dialect = "duckdb"

    def __init__(
        self,
        name: str,
        *,
        search_path: Path | None = None,
        database: Path | None = None,
        read_only: bool = False,
    ) -> None:
        self.name = name
        config: dict[str, str | bool | int | float | list[str]] = {}
        if search_path is not None:
            config["file_search_path"] = str(search_path)
        target = ":memory:" if database is None else str(database)
        try:
            self._db = duckdb.connect(target, read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise ConnectorError(f"cannot open DuckDB database {name!r}: {exc}") from exc
        self._lock = threading.Lock()

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda i: f"${i + 1}")
        with self._lock:
            cursor = self._db.cursor()
        try:
            relation = cursor.sql(text, params=params or None)
            if relation is None:
                return pa.table({})
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise ConnectorError(str(exc).strip(), database=self.name) from exc
        finally:
            cursor.close()

    def close(self) -> None:
        self._db.close()
