"""MySQL and MariaDB through PyMySQL: values bound in the driver's ``%s`` paramstyle.

PyMySQL is pure Python (no client library to build), so it installs from the
registry alone. Like Postgres, each thread has its own connection in autocommit
mode, opened lazily after the guard has checked the host; the connection goes to
the checked address. ``LOAD DATA LOCAL`` (a server reading the worker's files) and
several statements per call are off; the session time zone is UTC, so a
``TIMESTAMP`` is an instant (Arrow ``timestamp[us, UTC]``) and a ``DATETIME`` a
wall-clock time (no zone).

Connections are kept between runs of a long-lived process (``pool.py``, the pool the
Postgres connector uses too). One is pooled only if it comes back a fresh session:
at the end of a run it is sent ``COM_RESET_CONNECTION`` (MySQL 5.7.3+, MariaDB
10.2.4+), which rolls back a transaction and drops session variables, user
variables, temporary tables, prepared statements, table, named and global read
locks and ``HANDLER``s; the session set-up a new connection gets is then sent again
(``SET NAMES``, UTC, autocommit). Two things survive the reset on MariaDB (10.11
here): the current database (``USE``) and role (``SET ROLE``); they are compared
with what the connection had when it was opened, and a connection where either
changed is closed. So is one whose server refuses the reset, whose statement
failed, was interrupted (``KILL QUERY`` may arrive after the statement it was meant
for, so the connection it targeted never serves another run) or is still running.
PyMySQL has no public call for the reset; it is sent as ``ping()`` sends
``COM_PING`` (its ``_execute_command`` and ``_read_ok_packet``). PyMySQL keeps no
per-connection cache of prepared statements (values are bound client-side), so
nothing on the driver side can go out of step with the reset server session (what
broke the first Postgres pooling attempt).

``interrupt()`` opens a second connection (never a pooled one) and sends
``KILL QUERY`` for each running statement (the MySQL way to cancel one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import weakref
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeAlias

import pyarrow as pa
import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE, FLAG

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.guard import CheckedTarget, check_host
from quarry.runtime.connectors.per_thread import PerThreadConnections, checkout_running
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.pool import ConnectionPool, pool_key
from quarry.runtime.connectors.support import WarehouseConnector, unique_names

CONNECT_TIMEOUT_SECONDS = 10

# The command byte of COM_RESET_CONNECTION (PyMySQL's constants call 0x1F COM_END).
COM_RESET_CONNECTION = 0x1F

# What a session is given when opened (PyMySQL also sends SET NAMES first), sent
# again after a reset: the reset puts back the server's global defaults.
_TIME_ZONE = "SET time_zone = '+00:00'"
_AFTER_RESET = "SET NAMES {charset}, time_zone = '+00:00', autocommit = 1"
# What survives COM_RESET_CONNECTION (MariaDB): compared before a connection is kept.
_SURVIVORS = "SELECT DATABASE(), CURRENT_ROLE()"

# The stubs make it generic in its cursor class; at run time it is not subscriptable.
Connection: TypeAlias = "pymysql.connections.Connection[Any]"

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
        self._connections: PerThreadConnections[Connection] = PerThreadConnections(
            self._open, alive=lambda conn: bool(conn.open)
        )
        self._running: set[Connection] = set()
        # Sent KILL QUERY: closed at the end, never pooled (see the module docstring).
        self._interrupted: set[Connection] = set()
        self._key: str | None = None  # of the pool; None: pooling off

    @property
    def pool_key(self) -> str | None:
        """The pool key its connections are kept under (None: none opened yet, or
        pooling off): for tests and metrics, a digest only."""
        return self._key

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
            "init_command": _TIME_ZONE,
            # Cursor values as sent (no Python conversion of DECIMAL to float).
            "cursorclass": pymysql.cursors.Cursor,
        }
        if host and str(host).startswith("/"):
            args["unix_socket"] = host
        else:
            args["host"] = host or "localhost"
        return args

    def _open(self) -> Connection:
        """This thread's connection: from the pool when pooling is on (a new one is
        opened here, in this thread, when none is idle). The host guard has run for
        this connector before the pool is asked (``_connect_args``)."""
        args = self._connect_args()
        if self._policy.warehouse_pool_size <= 0:
            return self._connect(args)
        # The key has the policy's guard settings too: a connection opened under one
        # policy is never handed to a connector opened under another.
        self._key = pool_key(self.dialect, {**args, "quarry_policy": _guard_settings(self._policy)})
        return POOL.acquire(
            self._key,
            lambda: self._connect(args, pooled=True),
            max_open=self._policy.warehouse_pool_max_open,
            timeout=self._policy.warehouse_pool_timeout,
            database=self.name,
        )

    def _connect(self, args: Mapping[str, Any], *, pooled: bool = False) -> Connection:
        try:
            conn = pymysql.connect(**args)
        except pymysql.MySQLError as exc:
            raise ConnectorError(
                f"cannot connect to database {self.name!r}: {self._message(exc)}",
                database=self.name,
            ) from None
        if pooled:
            try:
                _OPENED[conn] = _survivors(conn)
            except BaseException:
                _close(conn)
                raise
        return conn

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "%s", escape_percent=True)
        conn = self._checkout()
        try:
            if sql.read_only is None:
                description, rows, unsigned = _run(conn, text, params)
            else:
                # A read-only transaction on this connection: a write inside it fails
                # (MySQL and MariaDB error 1792); the timeout is the caller's KILL
                # QUERY. The three statements on one connection, so a ``close`` from
                # another thread cannot move the statement out of the transaction.
                _run(conn, "START TRANSACTION READ ONLY", None)
                description, rows, unsigned = _run(conn, text, params)
                _run(conn, "ROLLBACK", None)
        except BaseException as exc:
            # Failed, killed or interrupted: whatever the session holds (a transaction,
            # a half-read result, a pending kill) must not reach a later statement or
            # run, so the connection is closed (a failed read-only statement's
            # transaction with it).
            self._discard(conn)
            if isinstance(exc, pymysql.MySQLError):
                raise ConnectorError(self._message(exc), database=self.name) from exc
            raise
        finally:
            with self._lock:
                self._running.discard(conn)
        if description is None:
            return pa.table({})
        names = [str(col[0]) for col in description]
        arrays = [
            _array([row[i] for row in rows], int(col[1]), col, i in unsigned)
            for i, col in enumerate(description)
        ]
        return pa.Table.from_arrays(arrays, names=unique_names(names))

    def _checkout(self) -> Connection:
        """This thread's connection, marked running (``per_thread.checkout_running``)."""
        return checkout_running(self._connections, self._lock, self._running)

    def _discard(self, conn: Connection) -> None:
        """Close ``conn`` now (its pool place freed), unless ``close`` already took it."""
        with self._lock:
            mine = self._connections.remove(conn)
        if mine:
            self._give_back(conn, reusable=False)

    def _give_back(self, conn: Connection, *, reusable: bool) -> None:
        """Back to the pool reset to a fresh session when ``reusable`` and never sent
        a ``KILL QUERY``; else closed (see the module docstring)."""
        with self._lock:
            if conn in self._interrupted:
                self._interrupted.discard(conn)
                reusable = False
        if self._key is None:
            _close(conn)
            return
        if reusable:
            try:
                reusable = _reset(conn)
            except Exception:  # a refused reset, a dead server, a changed driver
                reusable = False
        POOL.release(self._key, conn, reusable=reusable, keep=self._policy.warehouse_pool_size)

    def _message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = str(args[1]) if len(args) >= 2 else str(exc)
        return self._redact(text.strip())

    def interrupt(self) -> None:
        """``KILL QUERY`` each running statement, from a connection of its own."""
        with self._lock:
            running = list(self._running)
            self._interrupted.update(running)
        self._kill(running, "KILL QUERY")

    def _kill(self, conns: list[Connection], kill: str) -> None:
        """Send ``kill`` (``KILL QUERY``, ``KILL CONNECTION``) for each of ``conns`` from
        a new connection, not a pooled one (one more checkout could wait on
        ``MAX_OPEN``); errors ignored (the statement or session ended already, or the
        server is unreachable: nothing to stop there)."""
        if not conns:
            return
        thread_ids = [int(conn.thread_id()) for conn in conns]  # type: ignore[no-untyped-call]
        with contextlib.suppress(pymysql.MySQLError, ConnectorError):
            killer = self._connect(self._connect_args())
            try:
                with killer.cursor() as cur:
                    for thread_id in thread_ids:
                        with contextlib.suppress(pymysql.MySQLError):
                            cur.execute(f"{kill} %s", (thread_id,))
            finally:
                _close(killer)

    def close(self) -> None:
        """End of the run: each connection back to the pool, except those running a
        statement now (a close from another thread): those sessions are ended on the
        server (``KILL CONNECTION``) and their sockets shut, so neither the server's
        work nor this call waits for the statement to finish (closing a PyMySQL
        connection waits for the thread reading from it)."""
        with self._lock:
            conns = self._connections.take_all()
            running = [conn for conn in conns if conn in self._running]
        self._kill(running, "KILL CONNECTION")
        for conn in running:
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for conn in conns:
            self._give_back(conn, reusable=conn not in running)


def _run(
    conn: Connection, text: str, params: Any
) -> tuple[Any, tuple[tuple[Any, ...], ...], set[int]]:
    """One statement: its description (None: no result set), rows, unsigned columns."""
    with conn.cursor() as cur:
        cur.execute(text, params or None)
        description = cur.description
        rows = cur.fetchall() if description is not None else ()
        return description, tuple(rows), _unsigned_columns(cur)


def _guard_settings(policy: ConnectorPolicy) -> tuple[Any, ...]:
    """What a connection was allowed under (the guard's inputs), part of its pool key."""
    return (
        policy.fleet,
        policy.warehouse_allow_loopback,
        policy.warehouse_allow,
        policy.warehouse_deny,
        policy.state_cluster,
        policy.warehouse_allow_state_cluster,
    )


# A pooled connection -> its current database and role when opened (None: the server
# could not say, so the connection is never kept).
_OPENED: weakref.WeakKeyDictionary[Connection, tuple[Any, ...] | None] = weakref.WeakKeyDictionary()


def _survivors(conn: Connection) -> tuple[Any, ...] | None:
    """The session state ``COM_RESET_CONNECTION`` leaves as it is (None: a server
    without ``CURRENT_ROLE()``, MySQL before 8.0)."""
    try:
        with conn.cursor() as cur:
            cur.execute(_SURVIVORS)
            row = cur.fetchone()
    except pymysql.MySQLError:
        return None
    return None if row is None else tuple(row)


def _reset(conn: Connection) -> bool:
    """Make ``conn`` a fresh session (three round trips); False when it cannot be
    (then it is closed, not pooled). Raises on a connection or server error."""
    opened = _OPENED.get(conn)
    if opened is None or not conn.open:
        return False
    raw: Any = conn  # PyMySQL's own command plumbing, as its ping() uses it
    raw._execute_command(COM_RESET_CONNECTION, b"")
    raw._read_ok_packet()
    with conn.cursor() as cur:
        cur.execute(_AFTER_RESET.format(charset=conn.charset))
    return _survivors(conn) == opened


def _check(conn: Connection) -> None:
    """Checkout check of an idle pooled connection: one round trip (``COM_PING``,
    never reconnecting: a new session must go through the connector's guard), which
    fails on a killed connection or a restarted server."""
    conn.ping(reconnect=False)


def _close(conn: Connection) -> None:
    with contextlib.suppress(pymysql.MySQLError):
        conn.close()


POOL: ConnectionPool[Connection] = ConnectionPool(check=_check, close=_close)
"""MySQL and MariaDB connections kept between runs of this process (``pool.py``)."""


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
