"""Engines for the two supported state databases, SQLite (local) and Postgres (fleet).

``Engine`` and ``Connection`` are re-exported here so that modules outside
``quarry.store`` can name the handles they pass around without importing
SQLAlchemy (an import-linter contract forbids it: every query lives in ``store``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection as Connection
from sqlalchemy import Engine as Engine
from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``) and pin the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_state_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    connect_timeout: int | None = None,
) -> Engine:
    """The engine of the state database. For Postgres, ``pool_size`` connections kept
    open and ``max_overflow`` (default: as many again) opened past it in a burst
    (``QUARRY_DATABASE_POOL_SIZE`` / ``_MAX_OVERFLOW``; docs/capacity.md);
    ``connect_timeout`` bounds a connection attempt in seconds (the read replica's, so
    a replica that is away costs a request that long, not the driver's default)."""
    url = normalise_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    overflow = pool_size if max_overflow is None else max_overflow
    connect_args = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=overflow,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


_FALLBACK_WARN_EVERY = 60.0
_last_fallback_warning = [0.0]


@contextmanager
def read_connection(replica: Engine | None, primary: Engine) -> Iterator[Connection]:
    """A connection for reads that may lag the primary (``QUARRY_DATABASE_READ_URL``):
    the replica's, or the primary's when there is no replica or it cannot be reached.
    Falling back keeps listings answering while a replica restarts; a warning says so
    (at most once a minute). Only connecting falls back: an error of the read itself
    is the caller's, as on the primary."""
    if replica is not None:
        try:
            conn = replica.connect()
        except OperationalError as exc:
            now = time.monotonic()
            if now - _last_fallback_warning[0] > _FALLBACK_WARN_EVERY:
                _last_fallback_warning[0] = now
                log.warning("read replica unreachable, reading from the primary: %s", exc)
        else:
            with conn:
                yield conn
            return
    with primary.connect() as conn:
        yield conn


def ping(engine: Engine) -> None:
    """One round trip to the database (readiness probes); raises when it is away."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows whose key may already exist (content-addressed data written by racing
    compiles); returns how many were new."""
    if not rows:
        return 0
    # The dialect's module is imported here: a SQLite-backed process (quarry run, local
    # serve) never loads SQLAlchemy's PostgreSQL dialect (~50 ms).
    dialect_insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # rowcount is unreliable for executemany (psycopg reports -1): count what
    # RETURNING hands back, which is exactly the rows that were new.
    key = next(iter(table.primary_key.columns))
    stmt = dialect_insert(table).on_conflict_do_nothing().returning(key)
    return len(conn.execute(stmt, rows).all())
