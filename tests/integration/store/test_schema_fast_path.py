"""Boot on a database already at head: one query, no alembic import (it costs more
than the rest of a local ``quarry run``'s start-up); the head read from the version
files agrees with alembic's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quarry.core.errors import SchemaMismatch
from quarry.store.db import create_state_engine
from quarry.store.migrate import code_head, declared_head, migrate, prepare_schema

PROBE = """
import sys
from quarry.store.db import create_state_engine
from quarry.store.migrate import prepare_schema
engine = create_state_engine(sys.argv[1])
outcome = prepare_schema(engine, skip_migrations=False)
print(outcome.head if outcome else None, "alembic" in sys.modules)
"""


def test_the_declared_head_is_alembics() -> None:
    assert declared_head() == code_head()


def _probe(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_current_database_boots_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # An empty database takes the full path (alembic migrates it)...
    assert _probe(url) == f"{code_head()} True"
    # ...and once at head, booting recognises it without importing alembic.
    assert _probe(url) == f"{code_head()} False"


def test_a_database_not_at_head_takes_the_full_path(tmp_path: Path) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaMismatch, match="9999_future"):
        prepare_schema(engine, skip_migrations=False)
    with pytest.raises(SchemaMismatch, match="9999_future"):
        prepare_schema(engine, skip_migrations=True)
    engine.dispose()
