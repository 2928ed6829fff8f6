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
- ``POST /bigquery/v2/projects/{p}/jobs`` without ``dryRun`` (jobs.insert with the
  caller's ``jobId``), then ``GET .../queries/{job}`` (getQueryResults, the rows) and
  ``GET .../jobs/{job}`` (jobs.get): a query job run to its end at insert, unless its
  text holds :data:`HOLD`, which keeps it running until
  ``POST .../jobs/{job}/cancel`` (recorded in :attr:`BigQueryRest.cancels`), when it
  ends ``stopped`` as a cancelled BigQuery job does.
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
HOLD = "quarry_hold"


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
    cancels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.held = threading.Event()
        """Set once a job holding :data:`HOLD` is running."""
        self.db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.public_keys: list[Any] = []
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def ran(self) -> list[dict[str, Any]]:
        """The query configurations of every job run (jobs.query or jobs.insert, not dry)."""
        out = []
        for call in self.calls:
            if call.path.endswith("/queries"):
                out.append(call.body)
            elif call.path.endswith("/jobs"):
                config = call.body.get("configuration", {})
                if not config.get("dryRun"):
                    out.append(config.get("query", {}))
        return out

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


def _statement_type(sql: str) -> str:
    """BigQuery's name for the statement's kind (SELECT, INSERT, DELETE, CREATE_TABLE...),
    as DuckDB's parser sees it."""
    try:
        kinds = [s.type.name for s in duckdb.extract_statements(sql)]
    except duckdb.Error:
        return "SCRIPT"
    if len(kinds) != 1:
        return "SCRIPT"
    return {"CREATE": "CREATE_TABLE", "DROP": "DROP_TABLE"}.get(kinds[0], kinds[0])


def _rows_answer(
    names: list[str], rows: list[Any], reference: dict[str, str], processed: int
) -> dict[str, Any]:
    fields = [_field(n, [r[i] for r in rows]) for i, n in enumerate(names)]
    encoded = [
        {"f": [{"v": _cell(v, f["type"])} for v, f in zip(row, fields, strict=True)]}
        for row in rows
    ]
    return {
        "kind": "bigquery#queryResponse",
        "jobReference": reference,
        "jobComplete": True,
        "schema": {"fields": fields},
        "rows": encoded,
        "totalRows": str(len(rows)),
        "totalBytesProcessed": str(processed),
    }


def _job_resource(job: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {"state": job["state"]}
    if "error" in job:
        status["errorResult"] = job["error"]
        status["errors"] = [job["error"]]
    return {
        "kind": "bigquery#job",
        "id": f"{job['project']}:US.{job['id']}",
        "jobReference": {"projectId": job["project"], "jobId": job["id"], "location": "US"},
        "configuration": job["configuration"],
        "status": status,
        "statistics": {"creationTime": "1764900000000", "query": {"statementType": "SELECT"}},
    }


def _handler(server: BigQueryRest) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            server.calls.append(Call(url.path, dict(parse_qsl(url.query))))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._error(401, "Request is missing required authentication credential.")
            parts = url.path.split("/")
            job = server.jobs.get(parts[-1])
            if job is None:
                return self._error(404, f"Not found: Job {parts[-1]}", reason="notFound")
            if parts[-2] == "jobs":
                return self._json(200, _job_resource(job))
            return self._results(job, dict(parse_qsl(url.query)))

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
            if path.endswith("/jobs") and body.get("configuration", {}).get("dryRun"):
                return self._dry_run(project, body)
            if path.endswith("/jobs"):
                return self._insert(project, body)
            if path.endswith("/cancel"):
                return self._cancel(path.split("/")[-2])
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
                    "query": {
                        "totalBytesProcessed": total,
                        "statementType": _statement_type(str(config.get("query", {}).get("query"))),
                    },
                },
            }
            return self._json(200, job)

        def _insert(self, project: str, body: dict[str, Any]) -> None:
            query = body.get("configuration", {}).get("query", {})
            reference = dict(body.get("jobReference") or {})
            job_id = str(reference.get("jobId") or uuid.uuid4().hex)
            job: dict[str, Any] = {
                "id": job_id,
                "project": project,
                "configuration": body.get("configuration", {}),
                "state": "RUNNING",
                "stopped": threading.Event(),
            }
            server.jobs[job_id] = job
            if HOLD in str(query.get("query", "")):
                server.held.set()
                return self._json(200, _job_resource(job))
            params = [_param(p) for p in query.get("queryParameters", [])]
            default = query.get("defaultDataset", {}).get("datasetId")
            try:
                job["result"] = server.run(str(query.get("query", "")), params, default)
            except duckdb.Error as exc:
                job["error"] = {"reason": "invalidQuery", "message": str(exc).splitlines()[0]}
            job["state"] = "DONE"
            return self._json(200, _job_resource(job))

        def _cancel(self, job_id: str) -> None:
            job = server.jobs.get(job_id)
            if job is None:
                return self._error(404, f"Not found: Job {job_id}", reason="notFound")
            server.cancels.append(job_id)
            if job["state"] != "DONE":
                job["state"] = "DONE"
                job["error"] = {
                    "reason": "stopped",
                    "message": "Job execution was cancelled: User requested cancellation",
                }
                job["stopped"].set()
            return self._json(
                200, {"kind": "bigquery#jobCancelResponse", "job": _job_resource(job)}
            )

        def _results(self, job: dict[str, Any], query: dict[str, str]) -> None:
            if job["state"] != "DONE":
                # As BigQuery: wait up to timeoutMs for the job, then say it is running.
                job["stopped"].wait(min(int(query.get("timeoutMs") or 10_000), 10_000) / 1000)
            reference = {"projectId": job["project"], "jobId": job["id"], "location": "US"}
            if job["state"] != "DONE":
                running = {"kind": "bigquery#getQueryResultsResponse", "jobReference": reference}
                return self._json(200, {**running, "jobComplete": False})
            if "error" in job:
                error = job["error"]
                return self._error(400, error["message"], reason=error["reason"])
            names, rows = job["result"]
            answer = _rows_answer(names, rows, reference, server.dry_run_bytes)
            if query.get("maxResults") == "0":
                answer.pop("rows")
            return self._json(200, answer)

        def _query(self, project: str, body: dict[str, Any]) -> None:
            params = [_param(p) for p in body.get("queryParameters", [])]
            default = body.get("defaultDataset", {}).get("datasetId")
            try:
                names, rows = server.run(body["query"], params, default)
            except duckdb.Error as exc:
                return self._error(400, str(exc).splitlines()[0], reason="invalidQuery")
            reference = {"projectId": project, "jobId": uuid.uuid4().hex, "location": "US"}
            return self._json(200, _rows_answer(names, rows, reference, server.dry_run_bytes))

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
