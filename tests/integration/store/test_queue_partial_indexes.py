"""The task queue's partial indexes get their PostgreSQL ``WHERE`` on the first
PostgreSQL connection (issue #20: declaring it up front imports the PostgreSQL
dialect in every SQLite process)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from quarry.store.db import create_state_engine
from quarry.store.queue_tables import tasks


def test_a_postgres_connection_makes_the_indexes_partial(empty_pg_database: str) -> None:
    engine = create_state_engine(empty_pg_database)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    ddl = {
        str(index.name): str(CreateIndex(index).compile(dialect=postgresql.dialect()))
        for index in tasks.indexes
    }
    assert ddl["ix_tasks_claim"].endswith("WHERE state = 'queued'")
    assert ddl["ix_tasks_running"].endswith("WHERE state = 'running'")
    assert ddl["ix_tasks_started"].endswith("WHERE started_at IS NOT NULL")
