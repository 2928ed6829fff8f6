"""MySQL and MariaDB through PyMySQL: values bound in the driver's ``%s`` paramstyle.

PyMySQL is pure Python (no client library to build), so it installs from the
registry alone. Like Postgres, each thread has its own connection in autocommit
mode, opened lazily after the guard has checked the host; the connection goes to
the checked address. ``LOAD DATA LOCAL`` (a server reading the worker's files) and
several statements per call are off; the session time zone is UTC, so a
``TIMESTAMP`` is an instant (Arrow ``timestamp[us, UTC]``) and a ``DATETIME`` a
wall-clock time (no zone).

``interrupt()`` opens a second connection and sends ``KILL QUERY`` for each running
statement (the MySQL way to cancel one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE, FLAG

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.guard import CheckedTarget, check_host
from quarry.runtime.connectors.per_thread import PerThreadConnections
from quarry.runtime.connectors.support import WarehouseConnector, unique_names

CONNECT_TIMEOUT_SECONDS = 10

# Column type codes -> Arrow types, so an empty result still has typed columns.
_TYPES: Mapping[int, pa.DataType] = {
    FIELD_TYPE.TINY: pa.int64(),
    FIELD_TYPE.SHORT: pa.int64(),
    FIELD_TYPE.LONG: pa.int64(),
    FIELD_TYPE.INT24: pa.int64(),
    FIELD_TYPE.YEAR: pa.int64(),
    FIELD_TYPE.FLOAT: pa.float64(),
    FIELD_TYPE.DOUBLE: pa.float64(),
    FIELD_TYPE.DATE: pa.date32(),
    FIELD_TYPE.NEWDATE: pa.date32(),
    FIELD_TYPE.DATETIME: pa.timestamp("us"),
    FIELD_TYPE.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    FIELD_TYPE.TIME: pa.duration("us"),
    FIELD_TYPE.JSON: pa.string(),
    FIELD_TYPE.ENUM: pa.string(),
    FIELD_TYPE.SET: pa.string(),
}
_TEXT_TYPES = {
    FIELD_TYPE.VARCHAR,
    FIELD_TYPE.VAR_STRING,
    FIELD_TYPE.STRING,
    FIELD_TYPE.TINY_BLOB,
    FIELD_TYPE.MEDIUM_BLOB,
    FIELD_TYPE.LONG_BLOB,
    FIELD_TYPE.BLOB,
}


class MysqlConnector(WarehouseConnector):
    """One ``type: mysql`` database (MySQL or MariaDB) of a run."""

    dialect = "mysql"

    def _setup(self) -> None:
        self._target: CheckedTarget | None = None
        self._connections: PerThreadConnections[pymysql.connections.Connection[Any]] = (
            PerThreadConnections(self._open, alive=lambda conn: bool(conn.open))
        )
        self._running: dict[int, pymysql.connections.Connection[Any]] = {}

    def _connect_args(self) -> dict[str, Any]:
        port = int(self._settings.get("port") or 3306)
        if self._target is None:
            self._target = check_host(self.name, self._settings.get("host"), port, self._policy)
        # Connect to the address that was checked, not to a second DNS answer.
        host = self._target.addresses[0] if self._target.addresses else self._settings.get("host")
        args: dict[str, Any] = {
            "port": port,
            "user": self._settings.get("user"),
            "password": self._settings.get("password") or "",
            "database": self._settings.get("database"),
            "charset": "utf8mb4",
            "autocommit": True,
            "local_infile": False,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "init_command": "SET time_zone = '+00:00'",
            # Cursor values as sent (no Python conversion of DECIMAL to float).
            "cursorclass": pymysql.cursors.Cursor,
        }
        if host and str(host).startswith("/"):
            args["unix_socket"] = host
        else:
            args["host"] = host or "localhost"
        return args

    def _open(self) -> pymysql.connections.Connection[Any]:
        args = self._connect_args()
        try:
            return pymysql.connect(**args)
        except pymysql.MySQLError as exc:
            raise ConnectorError(
                f"cannot connect to database {self.name!r}: {self._message(exc)}",
                database=self.name,
            ) from None

    def query(self, sql: BoundSql) -> pa.Table:
        if sql.read_only is None:
            return self._query(sql)
        # A read-only transaction on this thread's connection: a write inside it fails
        # (MySQL and MariaDB error 1792); the timeout is the caller's KILL QUERY.
        self._query(BoundSql("START TRANSACTION READ ONLY"))
        try:
            return self._query(BoundSql(sql.text, sql.params, sql.token))
        finally:
            with contextlib.suppress(ConnectorError):  # a broken connection has no transaction
                self._query(BoundSql("ROLLBACK"))

    def _query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "%s", escape_percent=True)
        conn = self._connections.get()
        with conn.cursor() as cur:
            thread_id = int(conn.thread_id())  # type: ignore[no-untyped-call]
            with self._lock:
                self._running[thread_id] = conn
            try:
                cur.execute(text, params or None)
                description = cur.description
                rows = cur.fetchall() if description is not None else ()
                unsigned = _unsigned_columns(cur)
            except pymysql.MySQLError as exc:
                raise ConnectorError(self._message(exc), database=self.name) from exc
            finally:
                with self._lock:
                    self._running.pop(thread_id, None)
        if description is None:
            return pa.table({})
        names = [str(col[0]) for col in description]
        arrays = [
            _array([row[i] for row in rows], int(col[1]), col, i in unsigned)
            for i, col in enumerate(description)
        ]
        return pa.Table.from_arrays(arrays, names=unique_names(names))

    def _message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = str(args[1]) if len(args) >= 2 else str(exc)
        return self._redact(text.strip())

    def interrupt(self) -> None:
        """``KILL QUERY`` each running statement, from a connection of its own."""
        with self._lock:
            running = list(self._running)
        if not running:
            return
        with contextlib.suppress(pymysql.MySQLError, ConnectorError):
            killer = self._open()
            try:
                with killer.cursor() as cur:
                    for thread_id in running:
                        # An error: the statement ended already; nothing to stop.
                        with contextlib.suppress(pymysql.MySQLError):
                            cur.execute("KILL QUERY %s", (thread_id,))
            finally:
                killer.close()

    def close(self) -> None:
        self._connections.close_all(pymysql.MySQLError)


def _unsigned_columns(cur: Any) -> set[int]:
    """Which columns are UNSIGNED (the DB-API description does not say; the decimal
    precision depends on it). PyMySQL keeps the field packets on its result."""
    fields = getattr(getattr(cur, "_result", None), "fields", None) or []
    return {i for i, f in enumerate(fields) if getattr(f, "flags", 0) & FLAG.UNSIGNED}


def _decimal_type(column: Any, unsigned: bool) -> pa.DataType | None:
    """DECIMAL(p, s) from the column's display length (digits, a point, a sign)."""
    length, scale = int(column[3] or 0), int(column[5] or 0)
    precision = length - (1 if scale else 0) - (0 if unsigned else 1)
    if 0 < precision <= 38 and scale <= precision:
        return pa.decimal128(precision, scale)
    return None


def _array(values: list[Any], code: int, column: Any, unsigned: bool = False) -> pa.Array:
    typ = _TYPES.get(code)
    if code == FIELD_TYPE.TIMESTAMP:
        values = [v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) else v for v in values]
    if typ is not None:
        try:
            return pa.array(values, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return _text(values)  # a zero date ('0000-00-00') comes back as text
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        decimal = _decimal_type(column, unsigned)
        if decimal is not None:
            return pa.array([None if v is None else Decimal(v) for v in values], type=decimal)
        return _text(values)
    if code in _TEXT_TYPES:
        # BINARY/VARBINARY/BLOB come back as bytes, text columns as str.
        if any(isinstance(v, bytes | bytearray) for v in values):
            return pa.array([None if v is None else bytes(v) for v in values], pa.binary())
        return pa.array(values, type=pa.string())
    if code == FIELD_TYPE.BIT:
        return pa.array(
            [None if v is None else int.from_bytes(v, "big") for v in values], pa.int64()
        )
    if code == FIELD_TYPE.NULL:
        return pa.nulls(len(values))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _text(values)


def _text(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())
