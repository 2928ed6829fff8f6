"""``store.db.read_connection``: the replica's connection when it answers, the
primary's when there is none or it refuses connections (``QUARRY_DATABASE_READ_URL``);
an error of the read itself is not hidden by a fallback."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from quarry.store.db import Connection, create_state_engine, read_connection
from tests.support.services import free_port


def _database(conn: Connection) -> str:
    return str(conn.execute(text("select current_database()")).scalar_one())


def test_reads_the_replica_then_falls_back_to_the_primary(
    pg_database: str, empty_pg_database: str
) -> None:
    primary = create_state_engine(pg_database)
    # Another database stands in for the replica: the point is which engine answers.
    replica = create_state_engine(empty_pg_database)
    away = create_state_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout=2
    )
    try:
        with read_connection(replica, primary) as conn:
            assert _database(conn) == empty_pg_database.rsplit("/", 1)[1]
        with read_connection(None, primary) as conn:
            assert _database(conn) == pg_database.rsplit("/", 1)[1]
        with read_connection(away, primary) as conn:  # nothing listens on that port
            assert _database(conn) == pg_database.rsplit("/", 1)[1]
        with pytest.raises(ProgrammingError), read_connection(replica, primary) as conn:
            conn.execute(text("select * from no_such_table"))
    finally:
        for engine in (primary, replica, away):
            engine.dispose()
