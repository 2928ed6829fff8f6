"""Postgres through psycopg 3: values always travel as bound parameters.

Each thread gets its own connection (loops may run iterations concurrently),
opened lazily and closed with the connector. Connections are in autocommit mode:
a finished step's writes are durable before its checkpoint is written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa

from quarry.definitions.models.config import PostgresDatabase
from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError

SecretLookup = Callable[[str], str | None]

# Built-in type OIDs -> Arrow types, so an empty result still has typed columns.
_OID_TYPES: Mapping[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}


def connection_info(config: PostgresDatabase, secrets: SecretLookup) -> dict[str, Any]:
    """psycopg keyword arguments from ``config.yml``; ``*_var`` names a secret."""

    def pick(key: str, value: str | None, var: str | None) -> str | None:
        if var is not None:
            found = secrets(var)
            if found is None:
                raise ConnectorError(
                    f"database {config.name!r}: {key}_var names {var!r}, which is not set"
                )
            return found
        return value

    info: dict[str, Any] = {
        "host": pick("host", config.host, config.host_var),
        "port": pick("port", config.port, config.port_var),
        "user": pick("user", config.user, config.user_var),
        "dbname": pick("database", config.database, config.database_var),
    }
    if config.password_var is not None:
        info["password"] = pick("password", None, config.password_var)
    return {k: v for k, v in info.items() if v is not None}


class PostgresConnector(Connector):
    dialect = "postgres"

    def __init__(self, name: str, conninfo: Mapping[str, Any]) -> None:
        self.name = name
        self._conninfo = dict(conninfo)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection[Any]] = []

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(autocommit=True, **self._conninfo)
            except psycopg.Error as exc:
                raise ConnectorError(f"cannot connect to database {self.name!r}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "%s", escape_percent=True)
        conn = self._connection()
        with conn.cursor() as cur:
            try:
                cur.execute(text.encode(), params or None)
            except psycopg.Error as exc:
                raise ConnectorError(str(exc).strip(), database=self.name) from exc
            if cur.description is None:
                return pa.table({})
            rows = cur.fetchall()
            names = [col.name for col in cur.description]
            columns = [[row[i] for row in rows] for i in range(len(names))]
            types = [col.type_code for col in cur.description]
            arrays = [_array(values, oid) for values, oid in zip(columns, types, strict=True)]
        return pa.Table.from_arrays(arrays, names=_unique(names))

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _array(values: list[Any], oid: int) -> pa.Array:
    typ = _OID_TYPES.get(oid)
    if typ is not None:
        return pa.array(values, type=typ)
    if oid == 1700 and not any(isinstance(v, Decimal) for v in values):
        return pa.array(values, type=pa.float64())
    if oid in (114, 3802):  # json, jsonb: documents of any shape, kept as JSON text
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Values Arrow cannot type consistently are kept as their text form.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out
