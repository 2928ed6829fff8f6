from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.runtime.queue import RetryPolicy, TaskQueue, open_queue
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate

FAST_RETRY = RetryPolicy(backoff_base=0.05, backoff_max=0.2)


@pytest.fixture(params=["sqlite", "postgres", "postgres-pinned"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskQueue]:
    """The queue on each backend; ``postgres-pinned`` runs the test thread's operations
    on one held, asynchronously committing connection, through the driver directly
    (the worker loop's path)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = create_state_engine(url)
    migrate(engine)  # a no-op on the Postgres clone of the migrated template
    queue = open_queue(engine, retry=FAST_RETRY)
    if request.param == "postgres-pinned":
        with queue.pinned(async_commit=True):
            yield queue
    else:
        yield queue
    engine.dispose()


@pytest.fixture
def pg_queue(pg_database: str) -> Iterator[TaskQueue]:
    engine = create_state_engine(pg_database)
    yield open_queue(engine, retry=FAST_RETRY)
    engine.dispose()
