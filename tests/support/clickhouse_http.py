"""A ClickHouse HTTP interface on a real socket, executing with chDB (ClickHouse's
engine in-process), so the real ``clickhouse-connect`` client can be tested with
no ClickHouse server installed.

It speaks the part of the HTTP interface the client uses: the query in the URL's
``query`` parameter and/or the POST body, ``database``, ``param_<name>`` values
for server-side binding (handed to chDB as parameters, never spliced), settings as
other URL parameters, results in the format the query's ``FORMAT`` clause names,
and errors as ClickHouse sends them (status 500, ``X-ClickHouse-Exception-Code``).
Every request's settings, ``query_id`` and credentials are recorded for assertions;
settings are not applied (chDB has no ``custom_settings_prefixes`` for Oxy's filter
settings), except ``readonly``: with ``readonly=1`` a statement that is not a read
is refused with ClickHouse's code 164, as the server does.

Cancellation: a statement holding :data:`HOLD` does not run; it waits until a
``KILL QUERY WHERE query_id IN (...)`` names its id (recorded in ``kills``), then
fails with ClickHouse's ``QUERY_WAS_CANCELLED`` (code 394), or after 60 s.
"""

from __future__ import annotations

import base64
import importlib
import re
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# chDB ships no type information: its session is used as Any.
_CHDB_SESSION: Any = importlib.import_module("chdb.session")
_NOT_SETTINGS = {"query", "database", "query_id", "session_id", "user", "password", "compress"}
_NOT_SETTINGS |= {"decompress", "default_format", "wait_end_of_query", "role", "quota_key"}
HOLD = "quarry_hold"
_KILL = re.compile(r"^\s*KILL\s+QUERY\s+WHERE\s+query_id\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_READ = re.compile(r"^\s*\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


@dataclass
class Request:
    query: str
    params: dict[str, str]
    settings: dict[str, str]
    user: str | None
    password: str | None
    query_id: str | None = None


@dataclass
class ClickHouseHttp:
    """The server; ``url`` is what a ``config.yml`` names as ``host``."""

    user: str = "default"
    password: str = ""
    requests: list[Request] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.held = threading.Event()
        """Set once a statement holding :data:`HOLD` is waiting."""
        self._killed: dict[str, threading.Event] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="chdb-")
        self._session: Any = _CHDB_SESSION.Session(self._dir.name)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def execute(self, sql: str, params: dict[str, str], database: str | None) -> bytes:
        with self._lock:
            if database:
                self._session.query(f"USE `{database.replace('`', '')}`")
            result = self._session.query(sql, "TabSeparated", params=params or None)
            return bytes(result.bytes())

    def hold(self, query_id: str) -> bool:
        """Wait until ``query_id`` is killed; whether it was."""
        with self._lock:
            killed = self._killed.setdefault(query_id, threading.Event())
        self.held.set()
        return killed.wait(60)

    def kill(self, query_ids: list[str]) -> None:
        with self._lock:
            for query_id in query_ids:
                self.kills.append(query_id)
                self._killed.setdefault(query_id, threading.Event()).set()

    def setup(self, sql: str) -> None:
        """Run a statement directly (test data), outside the HTTP interface."""
        with self._lock:
            self._session.query(sql)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()
        self._dir.cleanup()


def _handler(server: ClickHouseHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length) if length else b"")

        def _answer(self, body: bytes) -> None:
            url = urlsplit(self.path)
            if url.path in ("/ping", "/") and not url.query and not body:
                return self._send(200, b"Ok.\n")
            query_params = dict(parse_qsl(url.query, keep_blank_values=True))
            user = self.headers.get("X-ClickHouse-User") or query_params.get("user")
            password = self.headers.get("X-ClickHouse-Key") or query_params.get("password")
            if self.headers.get("Authorization", "").startswith("Basic "):
                decoded = base64.b64decode(self.headers["Authorization"][6:]).decode()
                user, _, password = decoded.partition(":")
            sql = " ".join(p for p in (query_params.get("query", ""), body.decode()) if p)
            binds = {k[6:]: v for k, v in query_params.items() if k.startswith("param_")}
            settings = {
                k: v
                for k, v in query_params.items()
                if k not in _NOT_SETTINGS and not k.startswith("param_")
            }
            query_id = query_params.get("query_id")
            server.requests.append(Request(sql, binds, settings, user, password, query_id))
            if (user or "default") != server.user or (password or "") != server.password:
                message = (
                    f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                    "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"
                )
                return self._send(516, message.encode(), code="516", status=401)
            kill = _KILL.match(sql)
            if kill:
                server.kill([q.strip().strip("'") for q in kill.group(1).split(",")])
                return self._send(200, b"")
            if settings.get("readonly") in ("1", "2") and not _READ.match(sql):
                message = (
                    "Code: 164. DB::Exception: default: Cannot execute query in readonly "
                    "mode. (READONLY)"
                )
                return self._send(0, message.encode(), code="164")
            if HOLD in sql:
                if server.hold(query_id or ""):
                    message = "Code: 394. DB::Exception: Query was cancelled. (QUERY_WAS_CANCELLED)"
                    return self._send(0, message.encode(), code="394")
                return self._send(200, b"")
            try:
                data = server.execute(sql, binds, query_params.get("database"))
            except Exception as exc:  # chDB raises its errors as plain exceptions
                text = str(exc)
                match = re.search(r"Code: (\d+)", text)
                return self._send(0, text.encode(), code=match.group(1) if match else "1")
            return self._send(200, data)

        def _send(
            self, _kind: int, data: bytes, *, code: str | None = None, status: int = 500
        ) -> None:
            self.send_response(200 if code is None else status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-ClickHouse-Timezone", "UTC")
            self.send_header("X-ClickHouse-Server-Display-Name", "quarry-test-chdb")
            if code is not None:
                self.send_header("X-ClickHouse-Exception-Code", code)
            self.end_headers()
            self.wfile.write(data)

    return Handler
