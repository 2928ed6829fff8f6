"""Snowflake's REST protocol, the part snowflake-connector-python uses, on a real
socket, executing with DuckDB, so the real connector is tested without Snowflake.

- ``POST /session/v1/login-request``: password (``PASSWORD``) or key-pair
  (``AUTHENTICATOR: SNOWFLAKE_JWT``, the ``TOKEN`` a JWT whose RS256 signature is
  checked against the registered public key); answers a session token.
- ``POST /queries/v1/query-request``: ``sqlText`` with ``bindings`` (``"1": {type,
  value}``, handed to DuckDB as parameters, never spliced), answered as a JSON
  result (``rowtype``, ``rowset`` of strings); errors as Snowflake sends them
  (``success: false`` with ``code`` and ``message``).
- ``/telemetry/send``, ``/session?delete=true`` and ``abort-request``: accepted.
- Cancellation: each login is a session with its own ``sessionId``. A statement
  holding :data:`HOLD` does not run; it waits until ``SELECT
  SYSTEM$CANCEL_ALL_QUERIES(?)`` names its session (recorded in ``cancels``), then
  fails as Snowflake's cancelled statements do (``000604``), or after 60 s.

Every login and query body is recorded. Bodies may be gzip-compressed.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import duckdb
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

HOLD = "quarry_hold"
_CANCEL_ALL = "SYSTEM$CANCEL_ALL_QUERIES"


@dataclass
class SnowflakeRest:
    user: str
    password: str
    public_key: Any = None
    logins: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}  # session token -> session id
        self._cancelled: dict[int, threading.Event] = {}
        self.held = threading.Event()
        """Set once a statement holding :data:`HOLD` is waiting."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def login(self, data: dict[str, Any]) -> str | None:
        self.logins.append(data)
        if data.get("LOGIN_NAME") != self.user:
            return None
        if data.get("AUTHENTICATOR") == "SNOWFLAKE_JWT":
            if self.public_key is None or not _signed_by(str(data.get("TOKEN")), self.public_key):
                return None
        elif data.get("PASSWORD") != self.password:
            return None
        token = uuid.uuid4().hex
        with self._lock:
            self._tokens[token] = len(self._tokens) + 1001
        return token

    def session_of(self, token: str) -> int:
        return self._tokens[token]

    def session(self, header: str | None) -> int | None:
        """The session id of an ``Authorization`` header, None if not logged in."""
        for token, session in list(self._tokens.items()):
            if header == f'Snowflake Token="{token}"':
                return session
        return None

    def authorised(self, header: str | None) -> bool:
        return self.session(header) is not None

    def hold(self, session: int) -> bool:
        """Wait until the session's statements are cancelled; whether they were."""
        with self._lock:
            cancelled = self._cancelled.setdefault(session, threading.Event())
        self.held.set()
        return cancelled.wait(60)

    def cancel_all(self, session: int) -> None:
        with self._lock:
            self.cancels.append(session)
            self._cancelled.setdefault(session, threading.Event()).set()

    def run(self, sql: str, params: list[Any]) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        with self._lock:
            relation = self.db.cursor().sql(sql, params=params or None)
            if relation is None:
                return [], []
            table = relation.to_arrow_table()
        rowtype = [_rowtype(table.schema.field(i)) for i in range(table.num_columns)]
        rows = [[_text(v) for v in row.values()] for row in table.to_pylist()]
        return rowtype, rows

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.db.close()


def _signed_by(token: str, public: Any) -> bool:
    try:
        head, body, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        public.verify(raw, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    return True


def _rowtype(arrow_field: Any) -> dict[str, Any]:
    text = str(arrow_field.type)
    column: dict[str, Any] = {
        "name": arrow_field.name.upper(),
        "database": "",
        "schema": "",
        "table": "",
        "nullable": True,
        "byteLength": None,
        "length": None,
        "scale": None,
        "precision": None,
        "collation": None,
    }
    if text.startswith(("int", "uint")):
        return {**column, "type": "fixed", "scale": 0, "precision": 38}
    if text.startswith("decimal"):
        precision, scale = arrow_field.type.precision, arrow_field.type.scale
        return {**column, "type": "fixed", "scale": scale, "precision": precision}
    if text.startswith(("double", "float")):
        return {**column, "type": "real"}
    if text == "bool":
        return {**column, "type": "boolean"}
    if text.startswith("date"):
        return {**column, "type": "date"}
    if text.startswith("timestamp"):
        kind = "timestamp_tz" if arrow_field.type.tz else "timestamp_ntz"
        return {**column, "type": kind, "scale": 6, "precision": 0}
    return {**column, "type": "text", "byteLength": 16777216, "length": 16777216}


def _text(value: Any) -> str | None:
    """Snowflake's JSON rowset: every value as text (times as epoch seconds)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            seconds = (value - dt.datetime(1970, 1, 1)).total_seconds()
            return f"{seconds:.6f}"
        seconds = (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()
        return f"{seconds:.6f} 1440"  # TIMESTAMP_TZ: epoch and UTC offset + 1440 minutes
    if isinstance(value, dt.date):
        return str((value - dt.date(1970, 1, 1)).days)
    if isinstance(value, Decimal | float | int):
        return str(value)
    return str(value)


def _binding(binding: dict[str, Any]) -> Any:
    value = binding.get("value")
    if value is None:
        return None
    kind = binding.get("type")
    if kind == "FIXED":
        return int(value)
    if kind == "REAL":
        return float(value)
    if kind == "BOOLEAN":
        return value in ("true", "1", "TRUE")
    if kind == "DATE":  # epoch milliseconds
        return dt.date(1970, 1, 1) + dt.timedelta(milliseconds=int(value))
    if kind == "TIMESTAMP_NTZ":  # epoch nanoseconds
        return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(value) // 1000)
    return value


def _handler(server: SnowflakeRest) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _body(self) -> dict[str, Any]:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            return dict(json.loads(raw or b"{}"))

        def do_DELETE(self) -> None:
            self._json({"data": None, "code": None, "message": None, "success": True})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            body = self._body()
            if path == "/session/v1/login-request":
                token = server.login(dict(body.get("data") or {}))
                if token is None:
                    return self._fail("390100", "Incorrect username or password was specified.")
                data = {
                    "token": token,
                    "masterToken": "m-" + token,
                    "validityInSeconds": 3600,
                    "masterValidityInSeconds": 14400,
                    "displayUserName": server.user,
                    "serverVersion": "9.0.0",
                    "firstLogin": False,
                    "remMeToken": None,
                    "remMeValidityInSeconds": 0,
                    "healthCheckInterval": 45,
                    "newClientForUpgrade": None,
                    "sessionId": server.session_of(token),
                    "parameters": [],
                    "sessionInfo": {},
                }
                return self._json({"data": data, "code": None, "message": None, "success": True})
            if not server.authorised(self.headers.get("Authorization")):
                return self._fail("390104", "User must login again to access the service.")
            if path == "/queries/v1/query-request":
                session = server.session(self.headers.get("Authorization"))
                return self._query(body, session or 0)
            return self._json({"data": None, "code": None, "message": None, "success": True})

        def _query(self, body: dict[str, Any], session: int) -> None:
            server.queries.append(body)
            bindings = body.get("bindings") or {}
            params = [_binding(bindings[k]) for k in sorted(bindings, key=int)]
            text = str(body.get("sqlText", ""))
            if _CANCEL_ALL in text.upper():
                server.cancel_all(int(params[0]))
                text, params = "SELECT 'cancelled' AS status", []
            elif HOLD in text:
                if server.hold(session):
                    return self._fail("000604", "SQL execution canceled", sql_state="57014")
                text = "SELECT 1 AS held"
            try:
                rowtype, rows = server.run(text, params)
            except duckdb.Error as exc:
                message = "SQL compilation error:\n" + str(exc).splitlines()[0]
                return self._fail("002003", message, sql_state="42S02")
            data = {
                "parameters": [],
                "rowtype": rowtype,
                "rowset": rows,
                "total": len(rows),
                "returned": len(rows),
                "queryId": str(uuid.uuid4()),
                "queryResultFormat": "json",
                "statementTypeId": 4096,
                "version": 1,
                "sendResultTime": 1,
                "numberOfBinds": len(bindings),
                "arrayBindSupported": False,
            }
            return self._json({"data": data, "code": None, "message": None, "success": True})

        def _fail(self, code: str, message: str, sql_state: str = "08001") -> None:
            data = {"errorCode": code, "sqlState": sql_state, "queryId": str(uuid.uuid4())}
            self._json({"data": data, "code": code, "message": message, "success": False})

        def _json(self, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
