"""The warehouse the fleet agent tests ask about: a Postgres database of the test's
own with a ``notes`` table (two rows for north, one for south), so each test can
count the queries it received."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.services import PG_ADMIN_DSN


@pytest.fixture
def notes_warehouse(empty_pg_database: str) -> str:
    """The database name of a fresh warehouse holding ``notes(region)``."""
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{warehouse}", autocommit=True) as c:
        c.execute("CREATE TABLE notes (region text)")
        c.execute("INSERT INTO notes VALUES ('north'), ('north'), ('south')")
    return warehouse
