"""ClickHouse through clickhouse-connect (its HTTP interface), answering Arrow.

Values are bound server-side: each marker becomes a typed query parameter
(``{quarry_p0:Int64}``), sent apart from the SQL text, so a value is never spliced
into it. The host (the URL of ``config.yml``) is checked by the guard, and the
client connects to the checked address (the TLS name stays the configured host).

Oxy's ``filters`` travel as custom settings named ``<settings_prefix><filter>``
on every statement (``settings.filter_settings``), for row policies to read;
``role`` is sent as ClickHouse's ``role`` parameter. One HTTP client per thread
(a client is one session). Each statement carries a ``query_id`` of Quarry's;
``interrupt()`` sends ``KILL QUERY`` for the running ones, then closes the clients.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.guard import CheckedTarget, check_host
from quarry.runtime.connectors.per_thread import PerThreadConnections
from quarry.runtime.connectors.support import WarehouseConnector

CONNECT_TIMEOUT_SECONDS = 10
_RESULT_STATEMENT = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b",
    re.IGNORECASE | re.DOTALL,
)
_URL_SUFFIX = re.compile(r"\s*\(for url [^)]*\)")


def parameter_type(value: Any) -> str:
    """The ClickHouse type a bound Python value is declared as."""
    if value is None:
        return "Nullable(String)"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, Decimal):
        return "Decimal(38, 10)"
    if isinstance(value, dt.datetime):
        return "DateTime64(6)"
    if isinstance(value, dt.date):
        return "Date"
    return "String"


def server_bound(sql: BoundSql) -> tuple[str, dict[str, Any]]:
    """The text with typed server-side placeholders, and the parameters by name."""
    text, ordered = sql.to_driver(lambda i: f"\x00{i}\x00")
    values: dict[str, Any] = {}
    for i, value in enumerate(ordered):
        name = f"quarry_p{i}"
        kind = parameter_type(value)
        values[name] = str(value) if kind == "String" else value
        text = text.replace(f"\x00{i}\x00", f"{{{name}:{kind}}}", 1)
    return text, values


class ClickHouseConnector(WarehouseConnector):
    """One ``type: clickhouse`` database of a run."""

    dialect = "clickhouse"

    def _setup(self) -> None:
        self._target: CheckedTarget | None = None
        self._clients: PerThreadConnections[Client] = PerThreadConnections(self._open)
        self._running: set[str] = set()

    def _open(self) -> Client:
        host = str(self._settings["host"])
        port = int(self._settings["port"])
        if self._target is None:
            self._target = check_host(self.name, host, port, self._policy)
        address = self._target.addresses[0] if self._target.addresses else host
        session: dict[str, Any] = dict(self._settings.get("settings") or {})
        if self._settings.get("role"):
            session["role"] = self._settings["role"]
        secure = bool(self._settings.get("secure"))
        try:
            return clickhouse_connect.get_client(
                host=address,
                port=port,
                username=self._settings.get("username") or "default",
                password=self._settings.get("password") or "",
                database=self._settings.get("database") or "",
                secure=secure,
                # TLS checks the certificate against the configured name, not the address.
                server_host_name=host if secure else None,
                settings=session,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                compress=False,
                autogenerate_session_id=False,
            )
        except ClickHouseError as exc:
            raise ConnectorError(
                f"cannot connect to database {self.name!r}: {self._message(exc)}",
                database=self.name,
            ) from None

    def query(self, sql: BoundSql) -> pa.Table:
        text, parameters = server_bound(sql)
        client = self._clients.get()
        # Our own id for the statement, so interrupt() can KILL it on the server.
        query_id = f"quarry-{uuid.uuid4().hex}"
        per_query: dict[str, Any] = {"query_id": query_id}
        if sql.read_only is not None:
            # readonly=1: reads only, and no setting (Oxy's filters included) can be
            # changed by the statement; the server also stops it at the timeout.
            per_query["readonly"] = 1
            per_query["max_execution_time"] = max(1, int(sql.read_only))
        with self._lock:
            self._running.add(query_id)
        try:
            if _RESULT_STATEMENT.match(text):
                table: pa.Table = client.query_arrow(
                    text, parameters=parameters or None, settings=per_query, use_strings=True
                )
                return table
            client.command(text, parameters=parameters or None, settings=per_query)
            return pa.table({})
        except ClickHouseError as exc:
            raise ConnectorError(self._message(exc), database=self.name) from exc
        except OSError as exc:
            raise ConnectorError(
                f"database {self.name!r}: {self._redact(str(exc))}", database=self.name
            ) from exc
        finally:
            with self._lock:
                self._running.discard(query_id)

    def _message(self, exc: BaseException) -> str:
        text = str(exc).strip()
        # The client wraps the server's message and appends the request URL (the
        # host may be a secret): the server's own words are the useful part.
        text = _URL_SUFFIX.sub("", text.split("server response: ", 1)[-1]).strip()
        return self._redact(text)

    def interrupt(self) -> None:
        """``KILL QUERY`` each running statement by its id, from a client of its own
        (closing an HTTP connection does not stop a ClickHouse query), then close
        every client, so a request still waiting fails and ends."""
        with self._lock:
            running = sorted(self._running)
        if running:
            # The ids are ours (quarry-<hex>): safe to write as literals.
            ids = ", ".join(f"'{query_id}'" for query_id in running)
            with contextlib.suppress(ConnectorError, ClickHouseError, OSError):
                killer = self._open()
                try:
                    killer.command(f"KILL QUERY WHERE query_id IN ({ids}) ASYNC")
                finally:
                    killer.close()
        self.close()

    def close(self) -> None:
        self._clients.close_all()
