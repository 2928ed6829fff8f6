from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.runtime.queue import RetryPolicy, TaskQueue, open_queue
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate

FAST_RETRY = RetryPolicy(backoff_base=0.05, backoff_max=0.2)


@pytest.fixture(params=["sqlite", "postgres"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def queue(queue_url: str) -> Iterator[TaskQueue]:
    engine = create_state_engine(queue_url)
    migrate(engine)  # a no-op on the Postgres clone of the migrated template
    yield open_queue(engine, retry=FAST_RETRY)
    engine.dispose()


@pytest.fixture
def pg_queue(pg_database: str) -> Iterator[TaskQueue]:
    engine = create_state_engine(pg_database)
    yield open_queue(engine, retry=FAST_RETRY)
    engine.dispose()
