"""BigQuery's REST API, the part google-cloud-bigquery uses to run a query, on a real
socket, executing with DuckDB, so the real client is tested without Google.

- ``POST /token``: the OAuth token endpoint a service-account key names
  (``token_uri``); it checks the signed JWT assertion against the test key's public
  key and answers a bearer token.
- ``POST /bigquery/v2/projects/{p}/queries`` (jobs.query): the query with its
  positional parameters (handed to DuckDB as parameters, never spliced), answered
  complete, with the schema and rows in BigQuery's JSON encoding (INT64 as strings,
  TIMESTAMP as int64 microseconds when ``formatOptions.useInt64Timestamp``).
- ``POST /bigquery/v2/projects/{p}/jobs`` with ``dryRun`` (jobs.insert): the bytes
  the query "would process", :attr:`BigQueryRest.dry_run_bytes`.
- Errors as BigQuery sends them: 400 with ``{"error": {"code", "message", "errors"}}``.

Every request is recorded; a request without the bearer token is refused (401).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import duckdb
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOKEN = "ya29.test-token"


def service_account_key(token_uri: str, project: str = "quarry-test") -> dict[str, str]:
    """A fresh service-account key (a real RSA key) whose token endpoint is ``token_uri``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"runner@{project}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


@dataclass
class Call:
    path: str
    body: dict[str, Any]


@dataclass
class BigQueryRest:
    dry_run_bytes: int = 1000
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.public_keys: list[Any] = []
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def key(self) -> dict[str, str]:
        key = service_account_key(f"{self.url}/token")
        private = serialization.load_pem_private_key(key["private_key"].encode(), None)
        self.public_keys.append(private.public_key())
        return key

    def run(self, sql: str, params: list[Any], dataset: str | None) -> tuple[list[str], list[Any]]:
        with self._lock:
            cursor = self.db.cursor()
            if dataset:
                cursor.execute(f'USE "{dataset}"')
            relation = cursor.sql(sql, params=params or None)
            if relation is None:
                return [], []
            table = relation.to_arrow_table()  # tz-aware values without pytz
            columns = table.to_pydict()
            return table.column_names, list(zip(*columns.values(), strict=True))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.db.close()


def _signed_by(assertion: str, public: Any) -> bool:
    """Whether the JWT ``assertion`` carries an RS256 signature by ``public``'s key."""
    try:
        head, body, signature = assertion.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        public.verify(raw, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    return True


def _param(p: dict[str, Any]) -> Any:
    kind = p["parameterType"]["type"]
    value = p["parameterValue"].get("value")
    if value is None:
        return None
    parsers: dict[str, Callable[[str], Any]] = {
        "INT64": int,
        "FLOAT64": float,
        "BOOL": lambda v: v == "true",
        "NUMERIC": Decimal,
        "DATE": dt.date.fromisoformat,
        "TIMESTAMP": dt.datetime.fromisoformat,
        "DATETIME": dt.datetime.fromisoformat,
    }
    return parsers.get(kind, str)(value)


def _field(name: str, values: list[Any]) -> dict[str, Any]:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, list):
        inner = _field(name, [x for v in values if v for x in v])
        return {**inner, "mode": "REPEATED"}
    kind = "STRING"
    if isinstance(sample, bool):
        kind = "BOOLEAN"
    elif isinstance(sample, int):
        kind = "INTEGER"
    elif isinstance(sample, float):
        kind = "FLOAT"
    elif isinstance(sample, Decimal):
        kind = "NUMERIC"
    elif isinstance(sample, dt.datetime):
        kind = "TIMESTAMP" if sample.tzinfo is not None else "DATETIME"
    elif isinstance(sample, dt.date):
        kind = "DATE"
    return {"name": name, "type": kind, "mode": "NULLABLE"}


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [{"v": _cell(v, kind)} for v in value]
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "TIMESTAMP":
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        delta = value - epoch
        return str(delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds)
    if kind in ("DATE", "DATETIME"):
        return value.isoformat()
    return str(value)


def _handler(server: BigQueryRest) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = urlsplit(self.path).path
            if path == "/token":
                return self._token(raw)
            body = json.loads(raw or b"{}")
            server.calls.append(Call(path, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._error(401, "Request is missing required authentication credential.")
            project = path.split("/")[4] if path.count("/") >= 5 else "?"
            if path.endswith("/jobs"):
                return self._dry_run(project, body)
            if path.endswith("/queries"):
                return self._query(project, body)
            return self._error(404, f"Not found: {path}")

        def _token(self, raw: bytes) -> None:
            form = dict(parse_qsl(raw.decode()))
            for public in server.public_keys:
                if not _signed_by(form.get("assertion", ""), public):
                    continue
                payload = {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}
                return self._json(200, payload)
            return self._json(400, {"error": "invalid_grant", "error_description": "bad JWT"})

        def _dry_run(self, project: str, body: dict[str, Any]) -> None:
            config = body.get("configuration", {})
            total = str(server.dry_run_bytes)
            job = {
                "kind": "bigquery#job",
                "jobReference": {"projectId": project, "jobId": "dry", "location": "US"},
                "configuration": config,
                "status": {"state": "DONE"},
                "statistics": {
                    "totalBytesProcessed": total,
                    "query": {"totalBytesProcessed": total},
                },
            }
            return self._json(200, job)

        def _query(self, project: str, body: dict[str, Any]) -> None:
            params = [_param(p) for p in body.get("queryParameters", [])]
            default = body.get("defaultDataset", {}).get("datasetId")
            try:
                names, rows = server.run(body["query"], params, default)
            except duckdb.Error as exc:
                return self._error(400, str(exc).splitlines()[0], reason="invalidQuery")
            fields = [_field(n, [r[i] for r in rows]) for i, n in enumerate(names)]
            encoded = [
                {"f": [{"v": _cell(v, f["type"])} for v, f in zip(row, fields, strict=True)]}
                for row in rows
            ]
            answer = {
                "kind": "bigquery#queryResponse",
                "jobReference": {"projectId": project, "jobId": uuid.uuid4().hex, "location": "US"},
                "jobComplete": True,
                "schema": {"fields": fields},
                "rows": encoded,
                "totalRows": str(len(rows)),
                "totalBytesProcessed": str(server.dry_run_bytes),
            }
            return self._json(200, answer)

        def _error(self, code: int, message: str, reason: str = "invalid") -> None:
            error = {
                "code": code,
                "message": message,
                "errors": [{"reason": reason, "message": message}],
            }
            self._json(code, {"error": error})

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
