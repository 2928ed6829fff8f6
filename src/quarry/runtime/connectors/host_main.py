"""The connector host: the child process that runs a run's tenant SQL.

Started by :class:`quarry.runtime.connectors.isolated.ConnectorHost` as
``python -m quarry.runtime.connectors.host_main IN_FD OUT_FD`` with a scrubbed
environment (no ``QUARRY_*``, ``AWS_*``, ``PG*``), so workspace SQL never runs in a
process that holds the fleet's secrets. It caps its own address space and core
dumps before importing DuckDB, then serves requests from its parent:

- parent -> child: pickled dicts (the parent is trusted): ``init`` (the policy and
  the address-space cap), ``open`` (a connector of a kind of ``kinds.py``, its
  resolved parameters), ``query`` (a :class:`BoundSql`), ``interrupt``, ``close``;
- child -> parent: a JSON header, then for a result the Arrow IPC stream bytes.
  Never pickle: a child that tenant SQL managed to subvert can send the parent
  only data, not code.

Each request but ``interrupt`` runs on its own thread (loops query concurrently);
the main thread keeps reading, so an interrupt reaches a running statement, and an
end-of-file on the request pipe (the parent died, however) ends the process at once.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from quarry.runtime.connectors.base import Connector, ConnectorError


class _Host:
    def __init__(self, requests: Connection, replies: Connection) -> None:
        self.requests = requests
        self.replies = replies
        self.policy: Any = None
        self.connectors: dict[str, Connector] = {}
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()

    def send(self, header: dict[str, Any], body: bytes | None = None) -> None:
        with self._send_lock:
            self.replies.send_bytes(json.dumps(header).encode())
            if body is not None:
                self.replies.send_bytes(body)

    def serve(self) -> None:
        while True:
            try:
                # The parent is trusted; only the child -> parent direction must not be pickle.
                message: dict[str, Any] = pickle.loads(self.requests.recv_bytes())  # noqa: S301
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: so is every statement of its run
            op = message["op"]
            if op == "init":
                self.policy = message["policy"]
                _limit_memory(int(message["memory_bytes"]))
            elif op == "interrupt":
                with self._lock:
                    target = self.connectors.get(message["name"])
                if target is not None:
                    target.interrupt()
            elif op == "close":
                with self._lock:
                    opened = list(self.connectors.values())
                for connector in opened:
                    connector.close()
                os._exit(0)
            else:
                threading.Thread(target=self._answer, args=(message,), daemon=True).start()

    def _answer(self, message: dict[str, Any]) -> None:
        request = message["id"]
        try:
            if message["op"] == "open":
                self._open(message)
                self.send({"id": request, "ok": True})
            else:
                with self._lock:
                    connector = self.connectors[message["name"]]
                table = connector.query(message["sql"])
                self.send({"id": request, "ok": True, "arrow": True}, _ipc(table))
        except ConnectorError as exc:
            self.send(
                {
                    "id": request,
                    "ok": False,
                    "code": exc.code,
                    "message": exc.message,
                    "details": _jsonable(exc.details),
                }
            )
        except MemoryError:
            self.send(
                {
                    "id": request,
                    "ok": False,
                    "code": "connector_error",
                    "message": "the statement ran out of memory in the connector host "
                    "(QUARRY_DUCKDB_MEMORY_LIMIT)",
                }
            )
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.send(
                {
                    "id": request,
                    "ok": False,
                    "code": "connector_error",
                    "message": f"{type(exc).__name__}: {exc}",
                }
            )

    def _open(self, message: dict[str, Any]) -> None:
        from quarry.runtime.connectors.kinds import open_connector

        name: str = message["name"]
        # Messages are redacted by the parent, which knows the secrets it resolved.
        connector = open_connector(message["kind"], name, message["args"], policy=self.policy)
        with self._lock:
            self.connectors[name] = connector


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in details.items()}


def _limit_memory(memory_bytes: int) -> None:
    """Cap the address space (a runaway statement fails here, not on the machine)
    and turn core dumps off (a dump would hold the run's warehouse credentials)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes > 0:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        capped = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (capped, hard))


def main(argv: list[str]) -> None:
    requests = Connection(int(argv[0]), writable=False)
    replies = Connection(int(argv[1]), readable=False)
    # Nothing printed by a library may corrupt the reply pipe: stdout goes to stderr.
    os.dup2(2, 1)
    _Host(requests, replies).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
