"""DuckDB: a dataset folder queried by file name, or a database file, sandboxed.

One in-memory database per database of a run; a statement runs on a cursor (a
DuckDB connection) no other statement is using, so concurrent loop iterations never
share one. A cursor that ran a single read-only statement (``SELECT``, ``WITH`` or
``FROM`` first, no ``;`` but a trailing one, no ``setseed``) goes back to a small
pool for the next statement (a new cursor and its ``USE`` cost ~0.1 ms, a reused
one nothing); any other statement, a failed or an interrupted one, closes its cursor,
so what a statement may leave on its connection (a transaction, temporary objects,
prepared statements, variables, ``USE``) never reaches the next one.

Every database is sandboxed before workspace SQL runs (``docs/security.md``): file
access only inside the run's private snapshot of its dataset folder, no extension
installing or loading, memory and thread limits, spill space in a private temp
folder, and the configuration locked so SQL cannot ``SET`` or ``RESET`` its way out.
A database file is attached (read-only when it is part of the revision) before the
lock, so SQL cannot attach anything else.

DuckDB resolves a relative path against the process's working directory, which a
sandbox cannot allow; so string literals naming a file of the dataset folder
(``FROM 'orders.csv'``, ``read_csv('sub/*.csv')``) are anchored to the snapshot
before the statement runs.
"""

from __future__ import annotations

import posixpath
import re
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.dataset_tables import create_dataset_views
from quarry.runtime.connectors.policy import ConnectorPolicy

_DATA_GLOB = re.compile(
    r"^[\w./*?=\-]+\.(csv|tsv|txt|parquet|json|jsonl|ndjson)(\.gz|\.zst)?$", re.IGNORECASE
)
# A statement that leaves nothing on its connection: one query, read-only first word.
_READ_FIRST = re.compile(r"\s*(select|with|from)\b", re.IGNORECASE)
_SESSION_STATE = re.compile(r"setseed", re.IGNORECASE)  # a SELECT that sets a session value
_POOLED = 8  # idle cursors kept per database
_SANDBOX_REFUSAL = "file system operations are disabled by configuration"
_SANDBOX_HINT = (
    " (workspace SQL may read only the files of its dataset folder, named by their path "
    "inside it; see docs/security.md)"
)


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def open_sandboxed(
    *,
    policy: ConnectorPolicy,
    temp_dir: Path,
    readable: list[Path],
    database: Path | None = None,
    alias: str = "db",
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may open only ``readable`` folders and ``database``."""
    db = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "allow_persistent_secrets": False,
            # No table names resolved against Python objects of the calling frame.
            "python_enable_replacements": False,
            "threads": policy.duckdb_threads,
            "memory_limit": policy.duckdb_memory_limit,
            "max_temp_directory_size": policy.duckdb_max_temp_size,
            "temp_directory": str(temp_dir),
        },
    )
    try:
        if database is not None:
            mode = " (READ_ONLY)" if read_only else ""
            db.execute(f"ATTACH {quote_literal(str(database))} AS {quote_identifier(alias)}{mode}")
            db.execute(f"USE {quote_identifier(alias)}")
        for folder in readable:  # Oxy's table per file, as views (before the lock)
            create_dataset_views(db, folder)
        folders = ", ".join(quote_literal(str(path).rstrip("/") + "/") for path in readable)
        # This order matters: allowed_directories cannot change once access is off.
        db.execute(f"SET allowed_directories = [{folders}]")
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
    except BaseException:
        db.close()
        raise
    return db


class DuckDbConnector(Connector):
    dialect = "duckdb"

    def __init__(
        self,
        name: str,
        *,
        policy: ConnectorPolicy,
        temp_dir: Path,
        search_path: Path | None = None,
        database: Path | None = None,
        alias: str = "db",
        read_only: bool = False,
    ) -> None:
        self.name = name
        self._folder = search_path
        # Each cursor is a new DuckDB connection whose default catalog is memory.
        self._use = None if database is None else f"USE {quote_identifier(alias)}"
        try:
            self._db = open_sandboxed(
                policy=policy,
                temp_dir=temp_dir,
                readable=[] if search_path is None else [search_path],
                database=database,
                alias=alias,
                read_only=read_only,
            )
        except duckdb.Error as exc:
            raise ConnectorError(
                f"cannot open DuckDB database {name!r}: {_explain(str(exc))}", database=name
            ) from exc
        self._lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._idle: list[duckdb.DuckDBPyConnection] = []  # cursors ready for a statement
        self._interrupted: set[duckdb.DuckDBPyConnection] = set()
        self._closed = False

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda i: f"${i + 1}")
        if self._folder is not None:
            text = anchor_dataset_paths(text, self._folder)
        reusable = leaves_no_state(text)
        with self._lock:
            cursor = self._idle.pop() if reusable and self._idle else None
            fresh = cursor is None
            if cursor is None:
                cursor = self._db.cursor()
            self._running.add(cursor)
        keep = False
        try:
            if fresh and self._use is not None:
                cursor.execute(self._use)
            relation = cursor.sql(text, params=params or None)
            table = pa.table({}) if relation is None else relation.to_arrow_table()
            keep = reusable
            return table
        except duckdb.Error as exc:
            raise ConnectorError(_explain(str(exc).strip()), database=self.name) from exc
        finally:
            with self._lock:
                self._running.discard(cursor)
                if cursor in self._interrupted:
                    self._interrupted.discard(cursor)
                    keep = False
                keep = keep and not self._closed and len(self._idle) < _POOLED
                if keep:
                    self._idle.append(cursor)
            if not keep:
                cursor.close()

    def interrupt(self) -> None:
        """Stop the statements running on this database (for cancel and timeouts).

        Each statement has its own cursor, which the database's ``interrupt()`` does
        not reach: every running cursor is interrupted (under the lock, so never one
        already closed or back in the pool) and is closed, not pooled, once its
        statement returns."""
        with self._lock:
            for cursor in self._running:
                cursor.interrupt()
                self._interrupted.add(cursor)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for cursor in idle:
            cursor.close()
        self._db.close()


def leaves_no_state(text: str) -> bool:
    """Whether ``text`` is one statement that cannot leave anything on its DuckDB
    connection for the next statement (see the module's docstring). Conservative: a
    ``;`` inside a string literal or a leading comment just means a fresh cursor."""
    body = text.rstrip().rstrip(";")
    return (
        ";" not in body and _READ_FIRST.match(body) is not None and not _SESSION_STATE.search(body)
    )


def _explain(message: str) -> str:
    return message + _SANDBOX_HINT if _SANDBOX_REFUSAL in message else message


def anchor_dataset_paths(text: str, folder: Path) -> str:
    """``text`` with the names of dataset files made absolute in ``folder``: string
    literals (``FROM 'orders.csv'``, ``read_csv('sub/*.csv')``) and double-quoted
    names of existing files (``FROM "orders.csv"``, as generated SQL writes them)."""
    pieces: list[str] = []
    last = 0
    for offset, kind in duckdb.tokenize(text):
        quote = text[offset : offset + 1]
        if kind == duckdb.token_type.string_const and quote == "'":
            literal = True
        elif kind == duckdb.token_type.identifier and quote == '"':
            literal = False
        else:
            continue
        end = _quoted_end(text, offset, quote)
        if end is None:
            continue
        value = text[offset + 1 : end - 1].replace(quote * 2, quote)
        anchored = _dataset_path(value, folder, globs=literal)
        if anchored is not None:
            swapped = quote_literal(anchored) if literal else quote_identifier(anchored)
            pieces += [text[last:offset], swapped]
            last = end
    return "".join(pieces) + text[last:] if pieces else text


def _quoted_end(text: str, start: int, quote: str) -> int | None:
    index = start + 1
    while True:
        index = text.find(quote, index)
        if index < 0:
            return None
        if text[index + 1 : index + 2] == quote:
            index += 2
            continue
        return index + 1


def _dataset_path(value: str, folder: Path, *, globs: bool) -> str | None:
    if not value or value.startswith(("/", "~")) or "://" in value or "\\" in value:
        return None
    clean = posixpath.normpath(value)
    if clean == ".." or clean.startswith("../") or clean == ".":
        return None
    if any(ch in clean for ch in "*?["):
        return str(folder / clean) if globs and _DATA_GLOB.match(clean) else None
    if not globs:
        return str(folder / clean) if (folder / clean).is_file() else None
    return str(folder / clean) if (folder / clean).exists() else None
