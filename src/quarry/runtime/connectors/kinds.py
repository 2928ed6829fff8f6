"""Connector classes by kind, imported on first use.

The registry and the connector host (``host_main``) open connectors through
:func:`open_connector`, so a run imports only the drivers of the databases it
opens: ``import quarry.runtime.connectors.registry`` imports none (psycopg, PyMySQL,
clickhouse-connect and DuckDB each cost start-up time).

Every kind but ``duckdb`` takes ``(name, settings, *, policy, redact)`` where
``settings`` are plain resolved values (``settings.py``); DuckDB takes keyword
arguments (its sandbox folders).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from quarry.runtime.connectors.base import Connector
from quarry.runtime.connectors.policy import ConnectorPolicy

_CLASSES: dict[str, tuple[str, str]] = {
    "duckdb": ("quarry.runtime.connectors.duckdb", "DuckDbConnector"),
    "postgres": ("quarry.runtime.connectors.postgres", "PostgresConnector"),
    "mysql": ("quarry.runtime.connectors.mysql", "MysqlConnector"),
    "clickhouse": ("quarry.runtime.connectors.clickhouse", "ClickHouseConnector"),
    "bigquery": ("quarry.runtime.connectors.bigquery", "BigQueryConnector"),
    "domo": ("quarry.runtime.connectors.domo", "DomoConnector"),
    "snowflake": ("quarry.runtime.connectors.snowflake", "SnowflakeConnector"),
}


def connector_class(kind: str) -> Any:
    module, name = _CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def open_connector(
    kind: str,
    name: str,
    args: dict[str, Any],
    *,
    policy: ConnectorPolicy,
    redact: Callable[[str], str] | None = None,
) -> Connector:
    """A connector of ``kind`` named ``name``, opened under ``policy``.

    ``args`` for DuckDB are its keyword arguments; for the others ``settings`` (the
    resolved connection values) and optional ``options`` (the kind's extra keywords,
    e.g. Postgres's dialect for Redshift and Airhouse).
    """
    cls = connector_class(kind)
    if kind == "duckdb":
        connector: Connector = cls(name, policy=policy, **args)
        return connector
    extra = dict(args.get("options") or {})
    if redact is not None:
        extra["redact"] = redact
    # "conninfo": what the connector host was sent for Postgres before other kinds came.
    settings = args["settings"] if "settings" in args else args["conninfo"]
    connector = cls(name, settings, policy=policy, **extra)
    return connector
