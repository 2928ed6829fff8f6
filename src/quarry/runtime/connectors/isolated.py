"""Tenant SQL in a child process: connectors that forward to a connector host.

With ``QUARRY_TENANT_SQL_ISOLATION=process`` (the default on the Factory in fleet
mode, see ``docs/security.md``), a run's databases are opened in a child process
(:mod:`quarry.runtime.connectors.host_main`) instead of the process that holds the
state database URL, the object-store keys and the token secrets:

- started with ``subprocess`` (a fresh interpreter, never ``fork``: a forked child
  would hold a copy of the parent's memory, secrets included) and an environment of
  nothing but ``PATH``/``PYTHONPATH``/``VIRTUAL_ENV``/``LANG``/``LC_ALL``/``TZ`` and a
  ``HOME`` inside the run's sandbox; what a connector needs (its resolved warehouse
  parameters, the policy) travels over the pipe;
- the child opens the same sandboxed connector classes (DuckDB configuration,
  guard-checked Postgres), caps its address space at the DuckDB memory limit plus
  :data:`HEADROOM_BYTES`, and sends results back as Arrow IPC;
- it dies with its parent: it exits when its request pipe reaches end-of-file,
  which happens however the parent ends (``SIGKILL`` included);
- ``interrupt()`` asks the child to interrupt; a statement still running
  :data:`KILL_GRACE_SECONDS` later has the child killed, and every query of the run
  still waiting fails.

One child serves one :class:`~quarry.runtime.connectors.registry.Connections`
(a run), started when the run first opens a database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.guard import TargetRefused
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.secrets import SecretNotAllowed

log = logging.getLogger(__name__)

HEADROOM_BYTES = 2 << 30  # the interpreter, Arrow buffers and thread stacks
KILL_GRACE_SECONDS = 5.0
_ENV_KEPT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_ERRORS: dict[str, type[ConnectorError]] = {
    TargetRefused.code: TargetRefused,
    SecretNotAllowed.code: SecretNotAllowed,
}


def memory_bytes(limit: str) -> int:
    """DuckDB's ``memory_limit`` text (``2GB``, ``512MiB``) in bytes; 0 if unknown."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", limit)
    if match is None or match.group(2).upper() not in _UNITS:
        return 0
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def child_env(home: Path) -> dict[str, str]:
    """What the connector host may see of the environment: no secret of any kind."""
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    env["HOME"] = str(home)
    return env


class ConnectorHost:
    """The child process of one run, started on first use; thread-safe."""

    def __init__(self, policy: ConnectorPolicy, home: Callable[[], Path]) -> None:
        self.policy = policy
        self.home = home  # the run's sandbox folder, made when the child starts
        self.process: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[str, Future[pa.Table | None]]] = {}
        self._next = 0
        self._dead: str | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _start(self) -> None:
        """Under ``_lock``: a fresh interpreter, the pipe fds passed explicitly."""
        home = self.home()
        to_child, from_parent = os.pipe()
        from_child, to_parent = os.pipe()
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",  # the working directory (the run's folder) is not on sys.path
                    "-m",
                    "quarry.runtime.connectors.host_main",
                    str(to_child),
                    str(to_parent),
                ],
                pass_fds=(to_child, to_parent),
                stdin=subprocess.DEVNULL,
                env=child_env(home),
                cwd=home,
            )
        except BaseException:
            os.close(from_parent)
            os.close(from_child)
            raise
        finally:
            os.close(to_child)
            os.close(to_parent)
        self._requests = Connection(from_parent, readable=False)
        replies = Connection(from_child, writable=False)
        threading.Thread(
            target=self._read, args=(replies,), name="connector-host-reader", daemon=True
        ).start()
        memory = memory_bytes(self.policy.duckdb_memory_limit)
        cap = memory and memory + HEADROOM_BYTES
        self._send({"op": "init", "policy": self.policy, "memory_bytes": cap})
        log.debug(
            "connector host %d started in %.3fs", self.process.pid, time.monotonic() - started
        )

    def _send(self, message: dict[str, Any]) -> None:
        assert self._requests is not None
        with self._send_lock:
            self._requests.send_bytes(pickle.dumps(message))

    def _request(self, name: str, message: dict[str, Any]) -> pa.Table | None:
        future: Future[pa.Table | None] = Future()
        with self._lock:
            if self._closed:
                raise ConnectorError(f"database {name!r}: the run's connections are closed")
            if self._dead is not None:
                raise ConnectorError(f"database {name!r}: {self._dead}", database=name)
            if self.process is None:
                self._start()
            request = self._next
            self._next += 1
            self._pending[request] = (name, future)
        try:
            self._send({**message, "id": request, "name": name})
        except OSError:
            self._fail_all("the connector host process ended")
        return future.result()

    def open(self, name: str, kind: str, args: dict[str, Any]) -> None:
        self._request(name, {"op": "open", "kind": kind, "args": args})

    def query(self, name: str, sql: BoundSql) -> pa.Table:
        table = self._request(name, {"op": "query", "sql": sql})
        assert table is not None
        return table

    def interrupt(self, name: str) -> None:
        """Ask the child to interrupt ``name``'s statements; kill it if they go on."""
        with self._lock:
            running = {r for r, (n, _f) in self._pending.items() if n == name}
            if not running or self._dead is not None:
                return
        with contextlib.suppress(OSError):
            self._send({"op": "interrupt", "name": name})
        timer = threading.Timer(KILL_GRACE_SECONDS, self._kill_if_running, args=(running,))
        timer.daemon = True
        timer.start()

    def _kill_if_running(self, requests: set[int]) -> None:
        with self._lock:
            still = requests & self._pending.keys()
        if still and self.process is not None:
            log.warning(
                "connector host %d did not stop %d statement(s) within %.0fs of an "
                "interrupt: killed",
                self.process.pid,
                len(still),
                KILL_GRACE_SECONDS,
            )
            self._fail_all("the statement did not stop when interrupted; its process was killed")
            with contextlib.suppress(OSError):
                self.process.kill()

    def _read(self, replies: Connection) -> None:
        while True:
            try:
                header = json.loads(replies.recv_bytes())
                body = replies.recv_bytes() if header.get("arrow") else None
            except (EOFError, OSError, ValueError):
                break
            with self._lock:
                entry = self._pending.pop(int(header["id"]), None)
            if entry is None:
                continue
            name, future = entry
            if header["ok"]:
                future.set_result(None if body is None else pa.ipc.open_stream(body).read_all())
            else:
                kind = _ERRORS.get(str(header.get("code")), ConnectorError)
                details = {"database": name, **(header.get("details") or {})}
                future.set_exception(kind(str(header["message"]), **details))
        replies.close()
        code = None if self.process is None else self.process.wait()
        self._fail_all(f"the connector host process ended (exit code {code})")

    def _fail_all(self, why: str) -> None:
        with self._lock:
            if self._dead is None:
                self._dead = why
            pending, self._pending = self._pending, {}
        for name, future in pending.values():
            if not future.done():
                future.set_exception(ConnectorError(f"database {name!r}: {why}", database=name))

    def close(self) -> None:
        """Close the child's databases and end it (killed if it does not end in time)."""
        with self._lock:
            self._closed = True
            process, requests = self.process, self._requests
        if process is None or requests is None:
            return
        with contextlib.suppress(OSError):
            self._send({"op": "close"})
        requests.close()
        try:
            process.wait(KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class IsolatedConnector(Connector):
    """A database of the run opened in the run's :class:`ConnectorHost`."""

    def __init__(
        self,
        host: ConnectorHost,
        name: str,
        dialect: str,
        kind: str,
        args: dict[str, Any],
        *,
        redact: Any = None,
    ) -> None:
        self.host = host
        self.name = name
        self.dialect = dialect
        self._redact = redact
        self._call(lambda: host.open(name, kind, args))

    def _call(self, action: Any) -> Any:
        try:
            return action()
        except ConnectorError as exc:
            if self._redact is None:
                raise
            exc.message = self._redact(exc.message)
            exc.args = (exc.message,)
            raise

    def query(self, sql: BoundSql) -> pa.Table:
        table: pa.Table = self._call(lambda: self.host.query(self.name, sql))
        return table

    def interrupt(self) -> None:
        self.host.interrupt(self.name)

    def close(self) -> None:
        """The host closes every database of the run at once (``Connections.close``)."""
