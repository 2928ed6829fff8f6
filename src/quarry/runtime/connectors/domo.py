"""Domo through its query API (httpx), answering Arrow.

Oxy's model: an ``instance`` (``<instance>.domo.com``), a ``dataset_id`` and a
developer token (``developer_token_var``, sent as ``X-DOMO-Developer-Token``). A
statement is posted to ``/api/query/v1/execute/<dataset_id>`` as ``{"sql": ...}``;
the dataset is the statement's ``table``. Domo's API takes no bound parameters, so
a statement with ``param()`` values is refused rather than formatted into the SQL.

Results: ``columns``, ``metadata`` (a type per column) and ``rows``; LONG becomes
``int64``, DOUBLE/DECIMAL ``float64``, DATE ``date32`` and DATETIME ``timestamp[us]``
when they parse, anything else text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.support import WarehouseConnector

TIMEOUT_SECONDS = 600.0
_NUMBERS: dict[str, pa.DataType] = {
    "LONG": pa.int64(),
    "DOUBLE": pa.float64(),
    "DECIMAL": pa.float64(),
}


class DomoConnector(WarehouseConnector):
    """One ``type: domo`` database (one Domo dataset) of a run."""

    dialect = "mysql"  # the semantic layer's dialect for Domo (semantic/dialects.py)

    def _setup(self) -> None:
        self._client: httpx.Client | None = None

    def _open(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                base = str(self._settings["base_url"])
                self._check_url(base, "Domo API URL")
                self._client = httpx.Client(
                    base_url=base,
                    headers={"X-DOMO-Developer-Token": str(self._settings["token"])},
                    timeout=TIMEOUT_SECONDS,
                    follow_redirects=False,  # a redirect would carry the token elsewhere
                    trust_env=False,  # no proxy or netrc of the worker
                )
            return self._client

    def query(self, sql: BoundSql) -> pa.Table:
        if sql.params:
            raise ConnectorError(
                f"database {self.name!r}: Domo's query API takes no bound parameters, so "
                "param() values cannot be sent (Quarry does not format them into the SQL)",
                database=self.name,
            )
        client = self._open()
        path = f"/api/query/v1/execute/{self._settings['dataset_id']}"
        try:
            response = client.post(path, json={"sql": sql.text})
        except httpx.HTTPError as exc:
            raise ConnectorError(
                f"database {self.name!r}: {self._redact(type(exc).__name__ + ': ' + str(exc))}",
                database=self.name,
            ) from None
        if response.status_code != 200:
            raise ConnectorError(self._error(response), database=self.name)
        try:
            body = response.json()
            return _table(body["columns"], body.get("metadata") or [], body.get("rows") or [])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorError(
                f"database {self.name!r}: Domo answered something that is not a query "
                f"result ({type(exc).__name__})",
                database=self.name,
            ) from None

    def _error(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            text = body.get("message") or body.get("error") or response.text
        except ValueError:
            text = response.text
        return self._redact(f"Domo answered {response.status_code}: {str(text).strip()[:500]}")

    def interrupt(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _table(columns: list[str], metadata: list[dict[str, Any]], rows: list[list[Any]]) -> pa.Table:
    arrays = []
    for i in range(len(columns)):
        kind = str(metadata[i].get("type", "STRING")).upper() if i < len(metadata) else "STRING"
        arrays.append(_array([row[i] for row in rows], kind))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in columns])


def _array(values: list[Any], kind: str) -> pa.Array:
    try:
        if kind in _NUMBERS:
            return pa.array(values, type=_NUMBERS[kind])
        if kind == "DATE":
            dates = [None if v is None else dt.date.fromisoformat(str(v)) for v in values]
            return pa.array(dates, type=pa.date32())
        if kind == "DATETIME":
            stamps = [None if v is None else dt.datetime.fromisoformat(str(v)) for v in values]
            return pa.array(stamps, type=pa.timestamp("us"))
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())
