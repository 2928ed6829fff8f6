"""``QUARRY_DATABASE_POOL_SIZE`` / ``_MAX_OVERFLOW`` size the state database's pool
of every process (``node.services`` passes them to ``create_state_engine``): the
pool keeps that many connections, opens the overflow past it, and no more."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from quarry.core.settings import Settings
from quarry.store.db import create_state_engine


def test_the_pool_settings_bound_the_connections_a_process_opens(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATABASE_POOL_SIZE", "2")
    monkeypatch.setenv("QUARRY_DATABASE_MAX_OVERFLOW", "1")
    settings = Settings(database_url=pg_database)
    assert (settings.database_pool_size, settings.database_max_overflow) == (2, 1)
    engine = create_state_engine(
        pg_database,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    engine.pool._timeout = 0.2  # the 4th checkout fails fast instead of after 30 s
    held = [engine.connect() for _ in range(3)]  # 2 kept + 1 overflow
    try:
        with pytest.raises(PoolTimeout):
            engine.connect()
    finally:
        for conn in held:
            conn.close()
    assert engine.pool.checkedin() == 2  # the overflow one was closed when returned
    engine.dispose()


def test_the_defaults_are_ten_and_ten() -> None:
    settings = Settings()
    assert (settings.database_pool_size, settings.database_max_overflow) == (10, 10)
