"""Postgres through psycopg 3: values always travel as bound parameters.

Each thread gets its own connection (loops may run iterations concurrently),
taken lazily from the process's pool (``pool.py``) and given back when the connector
closes (the run ends): reset with ``DISCARD ALL`` first, or closed when it errored,
was cancelled, is still running or inside a transaction. Connections are in
autocommit mode: a finished step's writes are durable before its checkpoint is
written.

psycopg's automatic prepared statements are off (``prepare_threshold=None``): the
driver remembers what it prepared per connection and does not always see that
``DISCARD ALL`` dropped it, so a reused connection would run ``EXECUTE _pg3_0`` on a
session without it (``prepared statement "_pg3_0" does not exist``: what made the
first pooling attempt, 5327d4a, fail runs in the fleet's database-restart test).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.guard import CheckedTarget, check_host, check_identity
from quarry.runtime.connectors.per_thread import PerThreadConnections, checkout_running
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.pool import ConnectionPool, pool_key
from quarry.runtime.connectors.settings import connection_info as connection_info
from quarry.runtime.connectors.support import Redact, WarehouseConnector, unique_names
from quarry.store.identity import cluster_identity

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


class PostgresConnector(WarehouseConnector):
    """A warehouse reached only where the policy allows (see ``guard``): the host is
    checked before connecting and the server's identity after, on every connection.

    Also Redshift and Airhouse, which speak Postgres's wire protocol: ``dialect`` is
    the SQL they are written in (Airhouse: DuckDB's), ``default_port`` their Oxy
    default. Neither gives Postgres's cluster identity; a server that does not is
    accepted only when its ``pg_catalog.version()`` says it is not PostgreSQL (or is
    Redshift), which Quarry's state cluster never says.
    """

    dialect = "postgres"

    def __init__(
        self,
        name: str,
        conninfo: Mapping[str, Any],
        *,
        policy: ConnectorPolicy | None = None,
        redact: Redact = lambda message: message,
        dialect: str = "postgres",
        default_port: int = 5432,
    ) -> None:
        super().__init__(name, conninfo, policy=policy, redact=redact)
        self.dialect = dialect
        self._default_port = default_port

    def _setup(self) -> None:
        self._target: CheckedTarget | None = None
        self._connections: PerThreadConnections[psycopg.Connection[Any]] = PerThreadConnections(
            self._open, alive=lambda conn: not conn.closed
        )
        self._running: set[psycopg.Connection[Any]] = set()
        self._key: str | None = None  # of the pool; None: pooling off

    @property
    def pool_key(self) -> str | None:
        """The pool key its connections are kept under (None: none opened yet, or
        pooling off): for tests and metrics, a digest only."""
        return self._key

    def _checked_conninfo(self) -> dict[str, Any]:
        if self._target is None:
            try:
                port = int(self._settings.get("port") or self._default_port)
            except ValueError:
                raise ConnectorError(
                    f"database {self.name!r}: the port is not a number", database=self.name
                ) from None
            self._target = check_host(self.name, self._settings.get("host"), port, self._policy)
        info = dict(self._settings)
        if self._target.addresses:
            # Connect to the address that was checked, not to a second DNS answer.
            info["hostaddr"] = self._target.addresses[0]
        if self._policy.fleet:
            # The worker's own ~/.pgpass is not a workspace's credential store.
            info["passfile"] = os.devnull
        return info

    def _open(self) -> psycopg.Connection[Any]:
        """This thread's connection: from the pool when pooling is on (a new one is
        opened here, in this thread, when none is idle)."""
        info = self._checked_conninfo()
        if self._policy.warehouse_pool_size <= 0:
            return self._connect(info)
        # The identity check runs when a connection is opened: a connection opened
        # under a policy that allowed its server is not handed to one that would not.
        checked = (self._policy.state_cluster, self._policy.warehouse_allow_state_cluster)
        self._key = pool_key(self.dialect, {**info, "quarry_identity_policy": checked})
        return POOL.acquire(
            self._key,
            lambda: self._connect(info),
            max_open=self._policy.warehouse_pool_max_open,
            timeout=self._policy.warehouse_pool_timeout,
            database=self.name,
        )

    def _connect(self, info: Mapping[str, Any]) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(autocommit=True, prepare_threshold=None, **info)
        except psycopg.Error as exc:
            message = self._redact(str(exc).strip())
            raise ConnectorError(
                f"cannot connect to database {self.name!r}: {message}", database=self.name
            ) from None
        try:
            check_identity(self.name, _server_identity(conn), self._policy)
        except BaseException:
            conn.close()
            raise
        return conn

    def query(self, sql: BoundSql) -> pa.Table:
        if sql.read_only is not None and self.dialect == "postgres":
            return self._read_only(sql, sql.read_only)
        return self._query(sql)

    def _read_only(self, sql: BoundSql, seconds: float) -> pa.Table:
        """Inside ``BEGIN READ ONLY`` with a ``statement_timeout``, rolled back: a
        data-modifying CTE or ``SELECT ... INTO`` fails there (this thread's connection
        runs the three statements)."""
        millis = max(1, int(seconds * 1000))
        begin = f"BEGIN READ ONLY; SET LOCAL statement_timeout = {millis}; "
        # A failed statement's connection is closed (``_query``): no transaction left.
        result = self._query(BoundSql(begin + sql.text, sql.params, sql.token))
        self._query(BoundSql("ROLLBACK"))
        return result

    def _query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "%s", escape_percent=True)
        conn = self._checkout()
        try:
            with conn.cursor() as cur:
                cur.execute(text.encode(), params or None)
                while cur.nextset():  # several statements (a task opted in): the last
                    continue
                if cur.description is None:
                    return pa.table({})
                rows = cur.fetchall()
                names = [col.name for col in cur.description]
                types = [col.type_code for col in cur.description]
        except BaseException as exc:
            # Failed, cancelled or interrupted: whatever state the session is in (an
            # aborted transaction, a half-read result) must not reach a later
            # statement or run, so the connection is closed, not kept.
            self._discard(conn)
            if isinstance(exc, psycopg.Error):
                message = self._redact(str(exc).strip())
                raise ConnectorError(message, database=self.name) from exc
            raise
        finally:
            with self._lock:
                self._running.discard(conn)
        columns = [[row[i] for row in rows] for i in range(len(names))]
        arrays = [_array(values, oid) for values, oid in zip(columns, types, strict=True)]
        return pa.Table.from_arrays(arrays, names=unique_names(names))

    def _checkout(self) -> psycopg.Connection[Any]:
        """This thread's connection, marked running (``per_thread.checkout_running``)."""
        return checkout_running(self._connections, self._lock, self._running)

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        """Close ``conn`` now (its pool place freed), unless ``close`` already took it."""
        with self._lock:
            mine = self._connections.remove(conn)
        if mine:
            self._give_back(conn, reusable=False)

    def _give_back(self, conn: psycopg.Connection[Any], *, reusable: bool) -> None:
        """Back to the pool, reset to a fresh session (``DISCARD ALL``: settings,
        temporary tables, prepared statements, advisory locks, ``LISTEN``s), when
        ``reusable`` and outside any transaction; else closed. A server that refuses
        ``DISCARD ALL`` (Redshift, Airhouse may) gets its connections closed."""
        if self._key is None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            return
        idle = psycopg.pq.TransactionStatus.IDLE
        if reusable and not conn.closed and conn.info.transaction_status == idle:
            try:
                conn.execute("DISCARD ALL")
            except psycopg.Error:
                reusable = False
        else:
            reusable = False
        POOL.release(self._key, conn, reusable=reusable, keep=self._policy.warehouse_pool_size)

    def interrupt(self) -> None:
        """Send the server a cancel request for each statement running now."""
        with self._lock:
            running = list(self._running)
        for conn in running:
            # An error means the statement ended or the server is gone: nothing to stop.
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5.0)

    def close(self) -> None:
        """End of the run: each connection back to the pool, except those running a
        statement now (an interrupt from another thread): those are closed."""
        with self._lock:
            conns = self._connections.take_all()
            running = set(self._running)
        for conn in conns:
            self._give_back(conn, reusable=conn not in running)


def _check(conn: psycopg.Connection[Any]) -> None:
    """Checkout check of an idle pooled connection: one round trip (an empty query,
    as psycopg_pool's ``check_connection``), which fails on a terminated backend or a
    restarted server."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    conn.execute("")


def _close(conn: psycopg.Connection[Any]) -> None:
    conn.close()


POOL: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(check=_check, close=_close)
"""Postgres-wire connections kept between runs of this process (``pool.py``)."""


def _server_identity(conn: psycopg.Connection[Any]) -> str | None:
    """Postgres's cluster identity; for a server without one (Redshift, Airhouse), a
    marker when ``pg_catalog.version()`` shows it is not a PostgreSQL cluster."""
    try:
        with conn.cursor() as cur:
            return cluster_identity(cur)
    except psycopg.Error:
        pass
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.version()")
            row = cur.fetchone()
    except psycopg.Error:
        return None
    version = "" if row is None or row[0] is None else str(row[0])
    if version and ("Redshift" in version or not version.startswith("PostgreSQL")):
        return "not-postgresql: " + version[:80]
    return None


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
