"""Snowflake through snowflake-connector-python, answering Arrow.

Password or key-pair (``SNOWFLAKE_JWT``) authentication with the values of
``settings.snowflake_settings``; the key arrives as PEM bytes (read by the registry),
so the child process of tenant SQL reads no file. Values are bound server-side
(``paramstyle="qmark"``: the statement's ``?`` and a ``bindings`` map, never
formatted in). The guard checks the account's host before the first login.

One connection per thread (a connection is one session); ``interrupt()`` cancels
each running statement on Snowflake's side: the driver's abort request when its
query id is known, and ``SYSTEM$CANCEL_ALL_QUERIES(<session>)`` for its session.
"""

from __future__ import annotations

import contextlib
import json
import os
from decimal import Decimal
from typing import Any

import pyarrow as pa
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from snowflake.connector.constants import (  # type: ignore[attr-defined]  # public, re-exported
    FIELD_ID_TO_NAME,
)

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.guard import check_host
from quarry.runtime.connectors.per_thread import PerThreadConnections
from quarry.runtime.connectors.support import WarehouseConnector, unique_names

LOGIN_TIMEOUT_SECONDS = 60

# The driver's core probes cloud metadata services (AWS IMDS, GCE, Azure) at every
# login to report the platform in telemetry, loading the worker's own cloud
# credentials while at it. A workspace's warehouse has no business with them.
os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
_JSON_TYPES = {"VARIANT", "OBJECT", "ARRAY", "MAP"}


class SnowflakeConnector(WarehouseConnector):
    """One ``type: snowflake`` database of a run."""

    dialect = "snowflake"

    def _setup(self) -> None:
        self._checked = False
        self._connections: PerThreadConnections[Any] = PerThreadConnections(
            self._open, alive=lambda conn: not conn.is_closed()
        )
        self._running: dict[Any, int | None] = {}  # running cursor -> its session id

    def _connect_args(self) -> dict[str, Any]:
        s = self._settings
        if not self._checked:
            check_host(self.name, s["host"], int(s["port"]), self._policy)
            self._checked = True
        args: dict[str, Any] = {
            # The login names the account without its region (xy12345.us-east-1 -> xy12345).
            "account": str(s["account"]).split(".", 1)[0],
            "user": s["user"],
            "warehouse": s["warehouse"],
            "database": s["database"],
            "host": s["host"],
            "port": int(s["port"]),
            "protocol": s["protocol"],
            "paramstyle": "qmark",
            "login_timeout": LOGIN_TIMEOUT_SECONDS,
            "client_session_keep_alive": False,
            "enable_server_session_keep_alive_auto_detection": False,
        }
        for key in ("schema", "role"):
            if s.get(key):
                args[key] = s[key]
        if s.get("private_key_pem") is not None:
            args["authenticator"] = "SNOWFLAKE_JWT"
            args["private_key"] = _der_key(self.name, s["private_key_pem"])
        else:
            args["password"] = s.get("password") or ""
        return args

    def _open(self) -> Any:
        args = self._connect_args()
        try:
            return snowflake.connector.connect(**args)
        except snowflake.connector.Error as exc:
            raise ConnectorError(
                f"cannot connect to database {self.name!r}: {self._message(exc)}",
                database=self.name,
            ) from None

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "?")
        conn = self._connections.get()
        cursor = conn.cursor()
        with self._lock:
            self._running[cursor] = getattr(conn, "session_id", None)
        try:
            cursor.execute(text, params or None)
            description = cursor.description
            rows = cursor.fetchall() if description else []
        except snowflake.connector.Error as exc:
            raise ConnectorError(self._message(exc), database=self.name) from exc
        finally:
            with self._lock:
                self._running.pop(cursor, None)
            with contextlib.suppress(Exception):
                cursor.close()
        if not description:
            return pa.table({})
        arrays = [_array([row[i] for row in rows], col) for i, col in enumerate(description)]
        return pa.Table.from_arrays(arrays, names=unique_names([str(c.name) for c in description]))

    def _message(self, exc: BaseException) -> str:
        text = str(getattr(exc, "msg", None) or exc)
        return self._redact(text.strip())

    def interrupt(self) -> None:
        """Cancel the running statements on Snowflake's side: the driver's abort for
        each one whose query id is known, and ``SYSTEM$CANCEL_ALL_QUERIES`` for the
        sessions they run in, from a connection of its own (a statement still being
        sent has no query id yet; its session always has one)."""
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        for cursor in running:
            if cursor.sfqid:
                with contextlib.suppress(Exception):
                    cursor.abort_query(cursor.sfqid)
        sessions = sorted({s for s in running.values() if s is not None})
        if not sessions:
            return
        with contextlib.suppress(snowflake.connector.Error, ConnectorError):
            canceller = self._open()
            try:
                with contextlib.closing(canceller.cursor()) as cur:
                    for session in sessions:
                        # An error: the session ended already; nothing to stop.
                        with contextlib.suppress(snowflake.connector.Error):
                            cur.execute("SELECT SYSTEM$CANCEL_ALL_QUERIES(?)", [session])
            finally:
                canceller.close()

    def close(self) -> None:
        self._connections.close_all()


def _der_key(database: str, pem: bytes) -> bytes:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConnectorError(
            f"database {database!r}: private_key_path is not an unencrypted PEM private key",
            database=database,
            field="private_key_path",
        ) from None
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _array(values: list[Any], column: Any) -> pa.Array:
    kind = FIELD_ID_TO_NAME.get(column.type_code, "TEXT")
    try:
        if kind == "FIXED":
            scale, precision = int(column.scale or 0), int(column.precision or 38)
            if scale == 0:
                return pa.array(values, type=pa.int64())
            decimals = [None if v is None else Decimal(v) for v in values]
            return pa.array(decimals, type=pa.decimal128(min(precision, 38), scale))
        if kind == "REAL":
            return pa.array(values, type=pa.float64())
        if kind == "BOOLEAN":
            return pa.array(values, type=pa.bool_())
        if kind == "DATE":
            return pa.array(values, type=pa.date32())
        if kind == "TIMESTAMP_NTZ":
            return pa.array(values, type=pa.timestamp("us"))
        if kind in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
            return pa.array(values, type=pa.timestamp("us", tz="UTC"))
        if kind == "BINARY":
            return pa.array(values, type=pa.binary())
        if kind in _JSON_TYPES:
            return pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
                type=pa.string(),
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())
