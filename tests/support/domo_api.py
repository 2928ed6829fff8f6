"""Domo's query API on a real socket, executing with DuckDB, for the Domo connector.

``POST /api/query/v1/execute/<dataset_id>`` with ``{"sql": ...}`` and the
``X-DOMO-Developer-Token`` header, answered as Domo does: ``columns``, ``metadata``
(one ``{"type": ...}`` per column: LONG, DOUBLE, DECIMAL, STRING, DATE, DATETIME)
and ``rows``. The dataset is the table ``table`` of the statement (a DuckDB view
named per dataset). A wrong token is a 401; a SQL error a 400 with a ``message``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb


@dataclass
class DomoApi:
    token: str
    datasets: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def run(self, dataset: str, sql: str) -> tuple[list[str], list[str], list[list[Any]]]:
        with self._lock:
            cursor = self.db.cursor()
            # Domo's SQL names the dataset "table".
            cursor.execute(f'CREATE OR REPLACE TEMP VIEW "table" AS SELECT * FROM "{dataset}"')
            # Domo's parser reads a bare `table`; DuckDB's needs it quoted.
            relation = cursor.sql(re.sub(r"(?i)\b(FROM|JOIN)\s+table\b", r'\1 "table"', sql))
            assert relation is not None
            table = relation.to_arrow_table()
            rows = [list(r.values()) for r in table.to_pylist()]
            kinds = [_kind(table.schema.field(i).type) for i in range(table.num_columns)]
            return table.column_names, kinds, [[_json(v) for v in row] for row in rows]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.db.close()


def _kind(arrow_type: Any) -> str:
    text = str(arrow_type)
    if text.startswith(("int", "uint")):
        return "LONG"
    if text.startswith(("double", "float")):
        return "DOUBLE"
    if text.startswith("decimal"):
        return "DECIMAL"
    if text.startswith("date"):
        return "DATE"
    if text.startswith("timestamp"):
        return "DATETIME"
    return "STRING"


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _handler(api: DomoApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            api.calls.append((self.path, body, dict(self.headers)))
            prefix = "/api/query/v1/execute/"
            if self.headers.get("X-DOMO-Developer-Token") != api.token:
                return self._json(
                    401, {"status": 401, "message": "Full authentication is required"}
                )
            dataset = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            if dataset not in api.datasets:
                return self._json(404, {"status": 404, "message": f"No dataset {dataset}"})
            try:
                columns, kinds, rows = api.run(dataset, str(body.get("sql", "")))
            except duckdb.Error as exc:
                return self._json(400, {"status": 400, "message": str(exc).splitlines()[0]})
            answer = {
                "datasource": dataset,
                "columns": columns,
                "metadata": [{"type": k} for k in kinds],
                "rows": rows,
                "numRows": len(rows),
                "numColumns": len(columns),
            }
            return self._json(200, answer)

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
