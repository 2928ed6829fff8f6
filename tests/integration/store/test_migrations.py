"""Migrations replay to exactly the declared schema, and nodes refuse schemas they
do not understand."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from quarry.core.errors import SchemaMismatch
from quarry.store.db import create_state_engine
from quarry.store.migrate import check_schema, code_head, migrate, prepare_schema
from quarry.store.schema import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("empty_pg_database")
    return url


def test_replayed_migrations_equal_declared_schema(empty_url: str) -> None:
    engine = create_state_engine(empty_url)
    outcome = migrate(engine)
    assert outcome.applied and outcome.head == code_head()
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == [], f"schema drift between tables and migrations: {diff}"
    engine.dispose()


def test_second_migrate_is_a_noop(empty_url: str) -> None:
    engine = create_state_engine(empty_url)
    migrate(engine)
    again = migrate(engine)
    assert again.applied == [] and not again.changed
    engine.dispose()


def test_newer_schema_is_refused(empty_url: str) -> None:
    engine = create_state_engine(empty_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(SchemaMismatch, match="newer than this release"):
        migrate(engine)
    with pytest.raises(SchemaMismatch, match="newer than this release"):
        prepare_schema(engine, skip_migrations=True)
    engine.dispose()


def test_skip_migrations_refuses_an_old_schema(empty_url: str) -> None:
    engine = create_state_engine(empty_url)
    with pytest.raises(SchemaMismatch, match="quarry migrate"):
        prepare_schema(engine, skip_migrations=True)
    migrate(engine)
    assert check_schema(engine) == code_head()
    engine.dispose()
